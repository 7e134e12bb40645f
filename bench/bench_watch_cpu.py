#!/usr/bin/env python3
"""Daemon CPU per WATCH beside a READ's, as xsbench's watch:10 registers: fresh connections.

    python bench/bench_watch_cpu.py --base ../main        # xsd beside another checkout's
    python bench/bench_watch_cpu.py -c 300 --reps 3 --daemons uvloop-floor,xsd

Each daemon (bench_floors.py starts them: the uvloop floor, C xenstored, oxenstored, xsd in
memory, ``--base``'s xsd in memory) gets, from one client, ``-c`` connections one after
another, each registering 10 watches one at a time (its reply and initial event read before
the next), and the same number of connections each sending 10 READs one at a time.  The
daemon's CPU (every thread's, /proc/PID/task/*/schedstat) over each phase, divided by its requests, is
printed (medians of ``--reps`` fresh daemons, interleaved), and WATCH's excess over READ: what
a registration costs beyond a round trip.  The client is Python (tests/wire.py): the rates
are the client's, the CPU figures the daemon's.
"""
import argparse
import os
import statistics
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.bench_floors import Xsd, start, stop     # noqa: E402
from tests.wire import RawClient                    # noqa: E402
from xenstore_protocol import Op                    # noqa: E402

DAEMONS = ["uvloop-floor", "cxenstored", "oxenstored", "xsd"]
PER_CONNECTION = 10


def cpu_us(pid: int) -> float:
    """The daemon's CPU time so far, every thread's, in ns from the scheduler (schedstat's
    first field; /proc/PID/stat's ticks are 10 ms, coarser than a phase's share of them)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat", encoding="ascii") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:       # a thread that ended meanwhile
            pass
    return total / 1000


def phase(daemon, connections: int, op: int) -> float:
    """Daemon CPU (us) per request over ``connections`` fresh connections of 10 requests."""
    before = cpu_us(daemon.pid)
    for c in range(connections):
        with RawClient(daemon.socket_path, timeout=10) as client:
            for i in range(PER_CONNECTION):
                if op == Op.WATCH:
                    client.ok(Op.WATCH, b"/w/%d" % i, b"t%d-%d" % (c, i))
                    if not client.events:
                        client.wait_events(1)
                    client.events.clear()
                else:
                    client.ok(Op.READ, b"/r")
    return (cpu_us(daemon.pid) - before) / (connections * PER_CONNECTION)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-c", "--connections", type=int, default=300)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--daemons", default=",".join(DAEMONS))
    parser.add_argument("--base", metavar="TREE", help="another checkout's xsd beside (base)")
    args = parser.parse_args()
    names = args.daemons.split(",")
    if args.base:
        Xsd.base_tree = os.path.abspath(args.base)
        names.append("base")
    got = {name: {Op.WATCH: [], Op.READ: []} for name in names}
    with tempfile.TemporaryDirectory(prefix="xsd-watchcpu-") as work:
        for rep in range(args.reps):
            for name in names:                  # interleaved: load drifts hit all alike
                daemon = start(name, os.path.join(work, f"{name}-{rep}"), work)
                try:
                    with RawClient(daemon.socket_path, timeout=10) as client:
                        client.ok(Op.WRITE, b"/r", payload=b"/r\0" + b"v" * 12)
                    for op in (Op.WATCH, Op.READ):
                        got[name][op].append(phase(daemon, args.connections, op))
                finally:
                    stop(daemon)
    print("| daemon | CPU per WATCH (us) | CPU per READ (us) | WATCH - READ (us) |")
    print("|---|---:|---:|---:|")
    for name in names:
        watch, read = (statistics.median(got[name][op]) for op in (Op.WATCH, Op.READ))
        print(f"| {name} | {watch:.1f} | {read:.1f} | {watch - read:.1f} |")
    print(f"\n{args.connections} fresh connections x {PER_CONNECTION} requests, one at a time, "
          f"per phase; medians of {args.reps} fresh daemons, interleaved.")


if __name__ == "__main__":
    main()
