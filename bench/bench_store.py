#!/usr/bin/env python3
"""Memory of the node store: RSS per node for 100k nodes of 32 B, C store vs Python store.

    python bench/bench_store.py            # both backends, each in a fresh process, medians of 3
    python bench/bench_store.py --reps 1

The load is xsbench's ``rss`` test without a daemon: 100,000 writes of a
32-byte value to /rss/<i/1000>/<i%1000> (100 directories of 1000), through
the same interface (xsd/nodestore.py): PyNodeStore over xsd/core/store.py, what
the daemon holds today, and xsd/_native/store.py over store.c.  VmRSS
(/proc/self/status) before and after, in a process that did nothing else; the
C store also reports the bytes it asked malloc for.  For the whole daemon's
figure (Python store plus everything else) see bench/bench_floors.py.

Then the whole-tree dump a snapshot writer takes (``dump()``: store.h's
xsd_store_dump records, built by PyNodeStore in Python) and its parse into
node records (``nodes()``; ``nodes_bare``: ``nodes(children=False)``), at 100k nodes and again after 200k more (300k):
milliseconds per call, best of 3 in the process.

And a domain's release (xsd/core/daemon.py forget_domain) finding the nodes whose
permissions name it (about 100: 50 it owns, 50 that let it read, and their new ancestors): ``release_walk``
is how it used to find them, a walk of every node's record in Python
(``nodes(children=False)``, perms checked per node); ``naming`` is the store's own
scan (store.h xsd_store_naming: one C walk, a record only per node found).
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NODES = 100_000


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def child(backend: str) -> None:
    sys.path.insert(0, ROOT)
    from xenstore_protocol.perms import Perm
    from xsd.nodestore import PyNodeStore
    if backend == "c":
        from xsd._native.store import NodeStore as Store
    else:
        Store = PyNodeStore
    perms = (Perm("n", 0),)
    value = b"0123456789abcdef0123456789abcdef"
    paths = ["/rss/%d/%d" % (i // 1000, i % 1000) for i in range(NODES)]
    store = Store()
    before = rss_kb()
    t0 = time.perf_counter()
    for path in paths:
        store.write(path, value, perms)
    elapsed = time.perf_counter() - t0
    after = rss_kb()
    print("rss_bytes_per_node %.1f" % ((after - before) * 1024 / NODES))
    print("load_writes_per_s %.0f" % (NODES / elapsed))
    if backend == "c":
        st = store.stats()
        print("malloc_bytes_per_node %.1f" % (st["bytes"] / st["nodes"]))
    assert len(store) == NODES + 1 + 1 + 100 and store.check() == []
    for i in range(50):                 # what a release of domain 5 finds
        store.write("/local/domain/5/k%d" % i, value, (Perm("n", 5),))
        store.write("/shared/k%d" % i, value, (Perm("n", 0), Perm("r", 5)))

    def release_walk():
        return [(path, p[0][1] == 5) for path, _, p, _, _ in store.nodes(children=False)
                if any(domid == 5 for _, domid in p)]

    for label in ("100k", "300k"):
        if label == "300k":
            for i in range(2 * NODES):
                store.write("/more/%d/%d" % (i // 1000, i % 1000), value, perms)
        print("dump_ms_%s %.2f" % (label, best_ms(store.dump)))
        print("nodes_ms_%s %.2f" % (label, best_ms(lambda: sum(1 for _ in store.nodes()))))
        print("nodes_bare_ms_%s %.2f" % (
            label, best_ms(lambda: sum(1 for _ in store.nodes(children=False)))))
        assert store.naming(5) == release_walk() and len(store.naming(5)) >= 100
        print("release_walk_ms_%s %.2f" % (label, best_ms(release_walk)))
        print("naming_ms_%s %.2f" % (label, best_ms(lambda: store.naming(5))))


def best_ms(fn, reps: int = 3) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--child", choices=("c", "python"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return 0
    results = {"python": {}, "c": {}}
    for _ in range(args.reps):
        for backend in results:
            out = subprocess.run([sys.executable, __file__, "--child", backend], check=True,
                                 capture_output=True, text=True).stdout
            for line in out.splitlines():
                metric, value = line.split()
                results[backend].setdefault(metric, []).append(float(value))
    med = {b: {m: statistics.median(v) for m, v in r.items()} for b, r in results.items()}
    print("| 100k nodes of 32 B | Python store (xsd/core/store.py) | C store (store.c) | C / Python |")
    print("|---|---:|---:|---:|")
    for metric in ("rss_bytes_per_node", "load_writes_per_s"):
        p, c = med["python"][metric], med["c"][metric]
        print(f"| {metric} | {p:.0f} | {c:.0f} | {c / p:.2f} |")
    print(f"| malloc_bytes_per_node | | {med['c']['malloc_bytes_per_node']:.0f} | |")
    for metric in ("dump_ms_100k", "dump_ms_300k", "nodes_ms_100k", "nodes_ms_300k",
                   "nodes_bare_ms_100k", "nodes_bare_ms_300k", "release_walk_ms_100k",
                   "release_walk_ms_300k", "naming_ms_100k", "naming_ms_300k"):
        p, c = med["python"][metric], med["c"][metric]
        print(f"| {metric} | {p:.1f} | {c:.1f} | {c / p:.2f} |")
    print(f"\nmedians of {args.reps}; each figure from a fresh process; target (issue 17): "
          "<= 115 B of RSS per node, C xenstored's figure")
    for label in ("100k", "300k"):
        walk, scan = med["c"]["release_walk_ms_" + label], med["c"]["naming_ms_" + label]
        print(f"release scan at {label} nodes, C store: naming {scan:.2f} ms / walk in Python "
              f"{walk:.1f} ms = {scan / walk:.3f} (dump alone, the first step of any walk "
              f"of records in Python: {med['c']['dump_ms_' + label]:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
