#!/usr/bin/env python3
"""Request benchmark: xsd against Debian's C xenstored and oxenstored, side by side in one run.

    python bench/bench_requests.py                 # start all three daemons, compare, print a table
    python bench/bench_requests.py --socket PATH   # only measure the daemon already serving PATH

The load is the anchors' C load generator over libxenstore (../shared/anchors/xsbench.c,
built into a temporary directory: it is a shared tool, not part of this repository), so
every daemon sees the same client.  Daemons and repetitions are interleaved and medians
reported; the last columns are xsd's rate over each reference's.  xsd runs twice: in
memory (--no-persist, what the Xen daemons do) and with its default journal.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests import anchors                        # noqa: E402
from tests.daemon_process import DaemonProcess   # noqa: E402

TESTS = ["rw", "tx", "dir", "watch:10", "watch:10000"]
HIGHER_IS_BETTER = ("per_s",)


def build_xsbench(work: str) -> str:
    exe = os.path.join(work, "xsbench")
    subprocess.run(["gcc", "-O2", "-Wall", "-o", exe, os.path.join(anchors.ANCHORS, "xsbench.c"),
                    "-lxenstore", "-lpthread"], check=True)
    return exe


def run_xsbench(exe: str, socket_path: str, tests, nkeys: int) -> dict:
    """One xsbench process per test, so a load that hangs costs only its own figures."""
    env = dict(os.environ, XENSTORED_PATH=socket_path)
    results = {}
    for test in tests:
        try:
            out = subprocess.run([exe, "-n", str(nkeys), test], env=env, check=True,
                                 capture_output=True, text=True, timeout=300).stdout
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
            print(f"  {test} against {socket_path} failed: {err}", file=sys.stderr)
            continue
        results.update((k, float(v)) for k, v in (line.split() for line in out.splitlines() if line.strip()))
    return results


class Oxenstored:
    def __init__(self, rundir: str):
        self.rundir = rundir
        out = subprocess.run([os.path.join(anchors.ANCHORS, "start-oxenstored.sh"), rundir, "--no-access-log"],
                             cwd=anchors.ANCHORS, check=True, capture_output=True, text=True)
        self.pid = int(out.stdout.split()[-1])
        self.socket_path = os.path.join(rundir, "socket")

    def stop(self):
        subprocess.run(["kill", str(self.pid)])


def start(name: str, rundir: str):
    if name == "xsd":          # in memory, as the Xen daemons
        return DaemonProcess(rundir, ["--no-domain-init", "--no-persist"]).start()
    if name == "xsd-journal":  # the default: journal + fsync before each batch's replies
        return DaemonProcess(rundir, ["--no-domain-init"]).start()
    if name == "cxenstored":
        return anchors.ReferenceDaemon(rundir)
    return Oxenstored(rundir)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--socket", help="measure only this daemon's socket")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("-n", "--keys", type=int, default=20000)
    parser.add_argument("tests", nargs="*", default=TESTS)
    args = parser.parse_args()
    why = anchors.available()
    if why:
        sys.exit(f"cannot run: {why}")
    with tempfile.TemporaryDirectory() as work:
        exe = build_xsbench(work)
        if args.socket:
            for metric, value in run_xsbench(exe, args.socket, args.tests, args.keys).items():
                print(f"{metric:40s} {value:12.1f}")
            return 0
        daemons = ["xsd", "xsd-journal", "cxenstored", "oxenstored"]
        results = {d: {} for d in daemons}
        for rep in range(args.reps):
            for name in daemons:
                proc = start(name, os.path.join(work, f"{name}-{rep}"))
                try:
                    for metric, value in run_xsbench(exe, proc.socket_path, args.tests, args.keys).items():
                        results[name].setdefault(metric, []).append(value)
                finally:
                    proc.stop()
                print(f"rep {rep + 1}/{args.reps} {name} done", file=sys.stderr)
    med = {d: {m: statistics.median(v) for m, v in r.items()} for d, r in results.items()}
    print("| metric | xsd | xsd (journal, fsync) | cxenstored | oxenstored (no access log) | xsd/cx | xsd/ox |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for metric in med["xsd"]:
        x, c, o = med["xsd"][metric], med["cxenstored"].get(metric, float("nan")), \
            med["oxenstored"].get(metric, float("nan"))
        j = med["xsd-journal"].get(metric, float("nan"))
        better_high = metric.endswith(HIGHER_IS_BETTER)
        def ratio(ref):
            if not ref or not x or ref != ref:
                return "-"
            return f"{(x / ref if better_high else ref / x):.2f}"
        print(f"| {metric} | {x:.1f} | {j:.1f} | {c:.1f} | {o:.1f} | {ratio(c)} | {ratio(o)} |")
    print("\nxsd runs in memory (--no-persist) like the Xen daemons; the journal column is xsd's "
          "default durable mode.\nratios > 1 mean in-memory xsd is better (rates: xsd/ref; latencies: ref/xsd); "
          f"medians of {args.reps} interleaved runs, one libxenstore client")
    return 0


if __name__ == "__main__":
    sys.exit(main())
