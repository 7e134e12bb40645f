#!/usr/bin/env python3
"""In process: the daemon's own CPU from a WRITE's bytes to its watcher's event handed to
the transport, without sockets or an event loop (xsbench watch:W's pattern).

    python bench/bench_event_path.py                   # this checkout
    python bench/bench_event_path.py --tree CHECKOUT   # also another one, alternated

A Daemon (in memory) with two sessions whose transport write is a no-op: the watcher
with W watches on /w/<i> (token t<i>), the writer sending one WRITE of /w/0 (32 bytes)
per batch, as the request pump hands it over (``FastPath.serve``, then
``Daemon.flush``, as ``pump.serve_bytes`` does in memory), so each batch makes one
event and one reply.  Printed: microseconds per batch (thread CPU time), the median of
``--reps`` runs of ``-n`` batches, each tree in its own process, alternated.
"""
import argparse
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import sys, time
from xenstore_protocol import Op, Packet
from xsd.config import Config
from xsd.core.daemon import Daemon
watches, n = int(sys.argv[1]), int(sys.argv[2])
daemon = Daemon(Config(rundir="/nonexistent", no_domain_init=True))
assert daemon.fastpath is not None and daemon.fastpath.fires
told = [0]
def counted(data):
    told[0] += 1
watcher = daemon.open_session(counted, name="watcher")
writer = daemon.open_session(counted, name="writer")
daemon.handle(writer, Packet(Op.WRITE, 1, 0, b"/w/0\0v"))
for i in range(watches):
    daemon.handle(watcher, Packet(Op.WATCH, 2, 0, b"/w/%d\0t%d\0" % (i, i)))
daemon.flush()
data = Packet(Op.WRITE, 3, 0, b"/w/0\0" + b"0123456789abcdef" * 2).encode()
serve, flush = daemon.fastpath.serve, daemon.flush
for _ in range(2000):
    serve(writer, data, 1 << 16)
    flush()
told[0] = 0
start = time.thread_time()
for _ in range(n):
    serve(writer, data, 1 << 16)
    flush()
spent = time.thread_time() - start
assert told[0] == 2 * n, told
print(spent * 1e6 / n)
"""


def per_batch(tree: str, watches: int, n: int) -> float:
    python = os.path.join(tree, ".venv", "bin", "python")
    if not os.path.exists(python):
        python = sys.executable
    out = subprocess.run([python, "-c", CHILD, str(watches), str(n)], cwd=tree, check=True,
                         env=dict(os.environ, PYTHONPATH=tree, XSD_NATIVE="c"),
                         capture_output=True, text=True).stdout
    return float(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-w", "--watches", type=int, default=10000)
    parser.add_argument("-n", type=int, default=50000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tree", action="append", default=[])
    args = parser.parse_args()
    trees = [ROOT] + args.tree
    runs = {tree: [] for tree in trees}
    for _ in range(args.reps):
        for tree in trees:
            runs[tree].append(per_batch(tree, args.watches, args.n))
    print(f"us of daemon CPU per watched WRITE and its event, in process, W={args.watches}, "
          f"{args.n} batches, median of {args.reps} (all runs):")
    base = None
    for tree in trees:
        values = sorted(runs[tree])
        median = values[len(values) // 2]
        base = base or median
        label = "this tree" if tree == ROOT else tree
        print(f"  {label}: {median:.2f}  ({' '.join(f'{v:.2f}' for v in runs[tree])})"
              + ("" if tree == ROOT else f"  this tree / it: {base / median:.2f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
