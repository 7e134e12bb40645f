#!/usr/bin/env python3
"""Where the memory of a registered watch goes, inside one Daemon (no socket).

    python bench/bench_watch_memory.py              # 10,000 watches, the backend XSD_NATIVE picks
    python bench/bench_watch_memory.py -n 100000
    python bench/bench_watch_memory.py --python-watches     # the Python registry, for comparison

The load is bench_floors.py's watchrss row: one session registers watches on /w/<i> with
token t<i>, every reply and initial event flushed.  Python's share is tracemalloc's
difference across the registrations, by the source line that allocated it; the C watch
trie's share is what it asked malloc for (WatchTrie.stats(); malloc adds its own
overhead, about 8-16 B a block), and so is the C registry's (its records and the
session's table: CWatchRegistry.stats(), when the C registry runs).  For the daemon's RSS per watch beside C xenstored's
and oxenstored's, see ``bench_floors.py --rows watchrss``.
"""
import argparse
import gc
import os
import sys
import tracemalloc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from xenstore_protocol import Op, Packet   # noqa: E402
from xsd.config import Config              # noqa: E402
from xsd.core.daemon import Daemon         # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=10000, help="watches to register")
    parser.add_argument("--python-watches", action="store_true",
                        help="the Python registry (a Watch object per watch), not the C one")
    args = parser.parse_args()
    n = args.n

    daemon = Daemon(Config(rundir="/nonexistent", python_watches=args.python_watches))
    out = []
    session = daemon.open_session(out.append, name="bench")
    trie = daemon.watches.trie
    trie_before = trie.stats()
    c_trie = "bytes" in trie_before              # the Python fallback's objects are Python's
    registry = getattr(daemon.watches, "stats", None)   # the C registry's records
    registry_before = registry() if registry else None
    gc.collect()
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    for i in range(n):
        daemon.handle(session, Packet(Op.WATCH, i, 0, b"/w/%d\0t%d\0" % (i, i)))
        if i % 256 == 255:
            daemon.flush()
            out.clear()
    daemon.flush()
    out.clear()
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    assert len(daemon.watches) == n

    diffs = after.compare_to(before, "lineno")
    total = sum(d.size_diff for d in diffs)
    print(f"{n} watches on /w/<i>, one session; bytes per watch")
    print(f"Python objects (tracemalloc): {total / n:.1f}")
    for d in diffs:
        if abs(d.size_diff) >= n:                # a byte or more per watch
            frame = d.traceback[0]
            where = f"{os.path.relpath(frame.filename, ROOT)}:{frame.lineno}"
            print(f"  {d.size_diff / n:6.1f}  {where}")
    if c_trie:
        st = trie.stats()
        print("C watch trie, asked of malloc: %.1f (%.2f blocks, %.2f nodes per watch)" % (
            (st["bytes"] - trie_before["bytes"]) / n,
            (st["blocks"] - trie_before["blocks"]) / n,
            (st["nodes"] - trie_before["nodes"]) / n))
    if registry:
        st = registry()
        print("C watch records and session tables, asked of malloc: %.1f (%.2f blocks per watch)" % (
            (st["bytes"] - registry_before["bytes"]) / n,
            (st["blocks"] - registry_before["blocks"]) / n))


if __name__ == "__main__":
    main()
