#!/usr/bin/env python3
"""Request cost against both floors: xsd beside the Xen daemons and two do-nothing responders.

    python bench/bench_floors.py                  # -n 10000, 2 reps: about 10 minutes here
    python bench/bench_floors.py --reps 1 -n 5000 # a quick look

One client, the anchors' load generator over libxenstore (../shared/anchors/xsbench.c,
built into a temporary directory), drives every daemon in the same run, daemons and
repetitions interleaved, medians printed:

- C floor: bench/floors/floor_c.c (built here), canned reply per request, no store;
- uvloop floor: bench/floors/floor_uvloop.py, the same in Python, one write per batch;
- C xenstored and oxenstored (no access log), Debian's, through the anchors' scripts;
- xsd in memory (--no-persist) and xsd with its default journal, state on tmpfs
  (as /var/run/xenstored is on a Xen host).

Rows: ``xsbench -p PID rw mc:8`` (read, overwrite, create with one client; the daemon's
CPU per request from /proc/PID/stat, user + system; 8 clients at once) and, on a
freshly started daemon, ``xsbench -p PID rss`` (RSS per node for 100k nodes of 32 B).
The floors answer READ with 31 bytes and everything else OK, so they have no RSS row.
"""
import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.bench_requests import Oxenstored, build_xsbench   # noqa: E402
from tests import anchors                                    # noqa: E402
from tests.daemon_process import DaemonProcess               # noqa: E402

FLOORS = os.path.join(ROOT, "bench", "floors")
DAEMONS = ["c-floor", "uvloop-floor", "cxenstored", "oxenstored", "xsd", "xsd-journal"]
HEADINGS = {"c-floor": "C floor", "uvloop-floor": "uvloop floor", "cxenstored": "C xenstored",
            "oxenstored": "oxenstored (no log)", "xsd": "xsd in memory",
            "xsd-journal": "xsd, journal on tmpfs"}
ROWS = [("read_ops_per_s", "read ops/s, 1 client", "%.0f"),
        ("overwrite_ops_per_s", "overwrite ops/s, 1 client", "%.0f"),
        ("create_ops_per_s", "create ops/s, 1 client", "%.0f"),
        ("rw_daemon_cpu_us_per_op", "daemon CPU per request, 1 client (us)", "%.1f"),
        ("mc8_aggregate_ops_per_s", "8 clients at once: aggregate ops/s", "%.0f"),
        ("mc8_daemon_cpu_us_per_op", "8 clients: daemon CPU per request (us)", "%.1f"),
        ("rss_bytes_per_node", "RSS per node, 100k nodes of 32 B (fresh daemon)", "%.0f")]


class Floor:
    """One of the two canned-reply responders, on ``rundir/socket``."""

    def __init__(self, argv, rundir: str):
        os.makedirs(rundir, exist_ok=True)
        self.socket_path = os.path.join(rundir, "socket")
        self.proc = subprocess.Popen(argv + [self.socket_path])
        self.pid = self.proc.pid
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(self.socket_path)
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{argv} did not start")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)


class Xsd:
    def __init__(self, rundir: str, args):
        self.daemon = DaemonProcess(rundir, ["--no-domain-init", *args]).start()
        self.socket_path = self.daemon.socket_path
        self.pid = self.daemon.proc.pid

    def stop(self):
        self.daemon.stop()


def start(name: str, rundir: str, work: str):
    if name == "c-floor":
        return Floor([os.path.join(work, "floor_c")], rundir)
    if name == "uvloop-floor":
        return Floor([sys.executable, os.path.join(FLOORS, "floor_uvloop.py")], rundir)
    if name == "cxenstored":
        return anchors.ReferenceDaemon(rundir)
    if name == "oxenstored":
        return Oxenstored(rundir)
    if name == "xsd":
        return Xsd(rundir, ["--no-persist"])
    # The default journal, with its state directory on tmpfs like /var/run/xenstored.
    state = tempfile.mkdtemp(prefix="xsd-state-", dir="/dev/shm")
    daemon = Xsd(rundir, ["--state-dir", state])
    daemon.state_dir = state
    return daemon


def stop(daemon) -> None:
    daemon.stop()
    state = getattr(daemon, "state_dir", None)
    if state:
        shutil.rmtree(state, ignore_errors=True)


def xsbench(exe: str, daemon, tests, nkeys: int) -> dict:
    env = dict(os.environ, XENSTORED_PATH=daemon.socket_path)
    try:
        out = subprocess.run([exe, "-n", str(nkeys), "-p", str(daemon.pid), *tests], env=env,
                             check=True, capture_output=True, text=True, timeout=600).stdout
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        print(f"  xsbench {tests} failed: {err}", file=sys.stderr)
        return {}
    return {k: float(v) for k, v in (line.split() for line in out.splitlines() if line.strip())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("-n", "--keys", type=int, default=10000)
    parser.add_argument("--daemons", default=",".join(DAEMONS),
                        help="comma-separated subset of " + ",".join(DAEMONS))
    args = parser.parse_args()
    why = anchors.available()
    if why:
        sys.exit(f"cannot run: {why}")
    daemons = args.daemons.split(",")
    results = {d: {} for d in daemons}
    with tempfile.TemporaryDirectory() as work:
        exe = build_xsbench(work)
        subprocess.run(["gcc", "-O2", "-Wall", "-o", os.path.join(work, "floor_c"),
                        os.path.join(FLOORS, "floor_c.c")], check=True)
        for rep in range(args.reps):
            for name in daemons:
                runs = [["rw", "mc:8"]] + ([] if name.endswith("floor") else [["rss"]])
                for i, tests in enumerate(runs):       # rss on a fresh daemon of its own
                    daemon = start(name, os.path.join(work, f"{name}-{rep}-{i}"), work)
                    try:
                        for metric, value in xsbench(exe, daemon, tests, args.keys).items():
                            results[name].setdefault(metric, []).append(value)
                    finally:
                        stop(daemon)
                print(f"rep {rep + 1}/{args.reps} {name} done", file=sys.stderr)
    med = {d: {m: statistics.median(v) for m, v in r.items()} for d, r in results.items()}
    print("| metric | " + " | ".join(HEADINGS[d] for d in daemons) + " |")
    print("|---|" + "---:|" * len(daemons))
    for metric, label, fmt in ROWS:
        cells = [(fmt % med[d][metric]) if metric in med[d] else "" for d in daemons]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(f"\nxsbench -n {args.keys} -p PID rw mc:8, and rss on a fresh daemon; medians of {args.reps} "
          "interleaved runs; CPU per request is the daemon's user + system time (/proc/PID/stat).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
