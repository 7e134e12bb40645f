#!/usr/bin/env python3
"""Where the daemon's microseconds go between a WRITE and the watch event it causes on
another connection (xsbench watch:W's pattern), on the uvloop floor and on xsd.

    python bench/profile_events.py                 # 10,000 watches, 20,000 writes
    python bench/profile_events.py -w 10 -n 20000
    python bench/profile_events.py --tree CHECKOUT # also the xsd of another checkout

Client A registers W watches on /w/<i> (token t<i>) and reads their initial events;
client B then writes /w/0 N times, one at a time: it waits for its reply and A for
the one event (tests/wire.py's RawClient both).  Printed:

1. daemon CPU per watched write (user + system, /proc/PID/stat) of the uvloop floor
   (bench/floors/floor_uvloop.py, its minimal watch table) and of each xsd
   (``--no-persist --no-domain-init``), each on a fresh daemon;
2. xsd under cProfile with a CPU clock (time.thread_time), switched on and off by
   SIGRTMIN / SIGRTMIN+1 around the N writes (profile_requests.py's harness): the
   own time per write of the functions of ours on the way (top ``--top``), and the
   order in which the daemon wrote B's reply and A's event (strace is not needed:
   the write order is read from the profile's call order, see ``write_order``).

cProfile's overhead falls on every Python call, so the profiled microseconds are
larger than the measured ones; read them as shares.
"""
import argparse
import os
import pstats
import signal
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from profile_requests import FLOOR, PROFILED_XSD, cpu_us, start   # noqa: E402
from tests.wire import RawClient                          # noqa: E402
from xenstore_protocol import Op                           # noqa: E402

VALUE = b"0123456789abcdef0123456789abcdef"


def xsd_argv(tree: str, rundir: str, profile_out=None) -> list:
    python = os.path.join(tree, ".venv", "bin", "python")
    if not os.path.exists(python):
        python = sys.executable
    prefix = [python] + (["-c", PROFILED_XSD, profile_out] if profile_out else ["-m", "xsd"])
    return prefix + ["--rundir", rundir, "--no-persist", "--no-domain-init",
                     "--log-level", "WARNING"]


def setup(rundir: str, watches: int):
    """A with ``watches`` watches (initial events read), B with /w/0 written."""
    path = os.path.join(rundir, "socket")
    a, b = RawClient(path, timeout=30), RawClient(path, timeout=30)
    b.ok(Op.WRITE, payload=b"/w/0\0" + b"0")
    for first in range(0, watches, 256):
        ids = [a.send_packet(Op.WATCH, b"/w/%d\0t%d\0" % (i, i))
               for i in range(first, min(first + 256, watches))]
        for req_id in ids:
            a.reply(req_id)
    got = len(a.wait_events(watches, timeout=60))
    if got != watches:
        raise RuntimeError(f"{got} initial events for {watches} watches")
    return a, b


def writes(a, b, n: int) -> None:
    for _ in range(n):
        b.ok(Op.WRITE, payload=b"/w/0\0" + VALUE)
        if len(a.wait_events(1, timeout=10)) != 1:
            raise RuntimeError("no event")


def cpu_per_event(argv, rundir: str, cwd: str, watches: int, n: int) -> float:
    proc = start(argv, rundir, cwd)
    try:
        a, b = setup(rundir, watches)
        writes(a, b, min(n, 500))           # warm
        before = cpu_us(proc.pid)
        writes(a, b, n)
        after = cpu_us(proc.pid)
        a.close()
        b.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    return (after - before) / n


def profile(work: str, watches: int, n: int) -> pstats.Stats:
    rundir = os.path.join(work, "prof")
    out = os.path.join(work, "events.prof")
    proc = start(xsd_argv(ROOT, rundir, out), rundir, ROOT)
    try:
        a, b = setup(rundir, watches)
        writes(a, b, 200)
        os.kill(proc.pid, signal.SIGRTMIN)
        b.ok(Op.READ, b"/w/0")              # the signal has been handled by now
        writes(a, b, n)
        os.kill(proc.pid, signal.SIGRTMIN + 1)
        deadline = time.monotonic() + 20
        while not os.path.exists(out) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        a.close()
        b.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    return pstats.Stats(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-w", "--watches", type=int, default=10000)
    parser.add_argument("-n", type=int, default=20000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--tree", action="append", default=[],
                        help="also measure the xsd of this checkout (its .venv)")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        rows = {}
        trees = [("this tree", ROOT)] + [(t, t) for t in args.tree]
        for rep in range(args.reps):
            d = os.path.join(work, f"floor{rep}")
            rows.setdefault("uvloop floor", []).append(cpu_per_event(
                [sys.executable, FLOOR, os.path.join(d, "socket")], d, ROOT, args.watches, args.n))
            for i, (label, tree) in enumerate(trees):
                d = os.path.join(work, f"x{i}-{rep}")
                rows.setdefault("xsd, " + label, []).append(
                    cpu_per_event(xsd_argv(tree, d), d, tree, args.watches, args.n))
        print(f"daemon CPU per watched write and its event (us), W={args.watches}, "
              f"{args.n} writes, {args.reps} fresh daemons each (median, then all):")
        for label, values in rows.items():
            print(f"  {label}: {sorted(values)[len(values) // 2]:.1f}  "
                  + " ".join(f"{v:.1f}" for v in values))
        stats = profile(work, args.watches, args.n)
        print(f"\nxsd (this tree) under cProfile (CPU clock), own us per write, "
              f"top {args.top}:")
        entries = []
        for (filename, line, name), (_, calls, own, cum, _) in stats.stats.items():
            rel = os.path.relpath(filename, ROOT) if os.path.isabs(filename) else filename
            entries.append((own, cum, calls, f"{rel}:{line}({name})"))
        entries.sort(reverse=True)
        total = sum(e[0] for e in entries)
        print(f"  total {total * 1e6 / args.n:.1f} us per write")
        print("  own us  cum us  calls/write  function")
        for own, cum, calls, where in entries[:args.top]:
            print(f"  {own * 1e6 / args.n:6.2f} {cum * 1e6 / args.n:7.2f} "
                  f"{calls / args.n:8.2f}     {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
