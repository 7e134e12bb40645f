#!/usr/bin/env python3
"""CPU per transaction on the C store, as transactions moved to C step by step, in one run.

    python bench/bench_txn.py              # 2000 transactions per load, best of 5
    python bench/bench_txn.py -n 500 --reps 3

One in-process daemon on the C store (no sockets: what is measured is the request path,
the event loop and the kernel cost the same either way) gets, from one privileged
session, transactions of START, k x (WRITE of an existing key, READ of another) and
END T, each packet through ``FastPath.serve`` first and ``dispatch`` for what the
engine leaves, as the transport sends them.  Four ways, interleaved:

- before: ``transactions.Transaction`` (the Python overlay) on the C store, START,
  END and every request in a transaction answered by Python;
- Python ops on the C overlay (``ctransaction.CTransaction``), the engine kept out of
  transactions (``--python-requests``' path in a transaction);
- START/END in Python: the engine answering the requests inside the C overlay, START
  and END Python's (the daemon before TRANSACTION_START/END moved to the engine);
- after: the engine answering START, the requests inside, and END.

Printed: microseconds of process CPU per transaction (best of --reps), and "after"'s
ratio to "before" and to "START/END in Python".  XSD_NATIVE=c only.
"""
import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from xenstore_protocol import Op, Packet                # noqa: E402
from xsd._native import BACKEND                         # noqa: E402
from xsd.config import Config                           # noqa: E402
from xsd.core import ops                                # noqa: E402
from xsd.core.daemon import Daemon                      # noqa: E402
from xsd.core.transactions import Transaction, transaction_type   # noqa: E402

KEYS = 200


class Load:
    def __init__(self, way: str):
        self.daemon = d = Daemon(Config(rundir="/nonexistent", no_domain_init=True))
        self.way = way
        self.out = []
        self.session = d.open_session(self.out.append, domid=0, privileged=True, name="bench")
        for i in range(KEYS):
            self.send(Packet(Op.WRITE, 1, 0, b"/bench/k%d\0v" % i))

    def send(self, packet):
        d, s = self.daemon, self.session
        if self.way in ("before", "ops on C overlay") and (
                packet.tx_id or packet.op == Op.TRANSACTION_START):
            d.handle(s, packet)                 # the engine kept out of transactions
        elif self.way == "START/END in Python" and packet.op in (
                Op.TRANSACTION_START, Op.TRANSACTION_END):
            d.handle(s, packet)
        elif d.fastpath.serve(s, packet.encode(), 1 << 30)[0] == 0:
            d.handle(s, packet)
        d.flush()
        reply = b"".join(self.out)
        self.out.clear()
        return reply

    def transaction(self, i: int, pairs: int) -> None:
        tx = int(self.send(Packet(Op.TRANSACTION_START, 1, 0, b"\0"))[16:-1])
        for k in range(pairs):
            self.send(Packet(Op.WRITE, 2, tx, b"/bench/k%d\0value" % ((i + k) % KEYS)))
            self.send(Packet(Op.READ, 3, tx, b"/bench/k%d\0" % ((i + k + 1) % KEYS)))
        reply = self.send(Packet(Op.TRANSACTION_END, 4, tx, b"T\0"))
        assert reply.endswith(b"OK\0"), reply


def run_way(way: str, n: int, pairs: int) -> float:
    """Seconds of process CPU per transaction."""
    original = ops.transaction_type
    if way == "before":
        ops.transaction_type = lambda store: Transaction
    try:
        load = Load(way)
        started = time.process_time()
        for i in range(n):
            load.transaction(i, pairs)
        return (time.process_time() - started) / n
    finally:
        ops.transaction_type = original


# -- TRANSACTION_END's conflicts and removals ---------------------------------------------

SUBTREES = 50       # /bench/d<j>/a/b, each watched below its root (/bench/d<j>/a)


class EndLoad(Load):
    """Load for the ends the engine used to leave to Python: a conflicting commit (EAGAIN)
    and a commit holding a removal, with a watcher above the removed subtrees and one watch
    below each root (the REMOVE's entries below it are read then).  ``way``: "END in
    Python" (every TRANSACTION_END through dispatch, as the engine before punted these) or
    "after" (the engine answers them)."""

    def __init__(self, way: str):
        super().__init__(way)
        d = self.daemon
        self.events = []
        self.watcher = d.open_session(self.events.append, domid=0, privileged=True,
                                      name="watcher")
        d.handle(self.watcher, Packet(Op.WATCH, 1, 0, b"/bench\0above\0"))
        for j in range(SUBTREES):
            self.send(Packet(Op.WRITE, 1, 0, b"/bench/d%d/a/b\0v" % j))
            d.handle(self.watcher, Packet(Op.WATCH, 1, 0, b"/bench/d%d/a\0below\0" % j))
        d.flush()
        self.events.clear()
        self.cpu = 0.0

    def send(self, packet):
        if self.way == "END in Python" and packet.op == Op.TRANSACTION_END:
            self.daemon.handle(self.session, packet)
            self.daemon.flush()
            reply = b"".join(self.out)
            self.out.clear()
            return reply
        return Load.send(self, packet)

    def conflict(self, i: int) -> None:
        """START, READ in it, a WRITE of that node outside, END T: EAGAIN."""
        started = time.process_time()
        tx = int(self.send(Packet(Op.TRANSACTION_START, 1, 0, b"\0"))[16:-1])
        self.send(Packet(Op.READ, 2, tx, b"/bench/k%d\0" % (i % KEYS)))
        self.send(Packet(Op.WRITE, 3, 0, b"/bench/k%d\0moved" % (i % KEYS)))
        reply = self.send(Packet(Op.TRANSACTION_END, 4, tx, b"T\0"))
        self.cpu += time.process_time() - started
        assert reply.endswith(b"EAGAIN\0"), reply
        self.events.clear()

    def removal(self, i: int) -> None:
        """START, RM of a three-node subtree, WRITE of another node, END T; the subtree is
        made again outside (not counted) for its next turn."""
        j = i % SUBTREES
        started = time.process_time()
        tx = int(self.send(Packet(Op.TRANSACTION_START, 1, 0, b"\0"))[16:-1])
        self.send(Packet(Op.RM, 2, tx, b"/bench/d%d\0" % j))
        self.send(Packet(Op.WRITE, 3, tx, b"/bench/k%d\0value" % (i % KEYS)))
        reply = self.send(Packet(Op.TRANSACTION_END, 4, tx, b"T\0"))
        self.cpu += time.process_time() - started
        told = b"".join(self.events)
        assert reply.endswith(b"OK\0") and told.count(b"\0below\0") == 1 and \
            told.count(b"\0above\0") == 2, (reply, told)
        self.events.clear()
        self.send(Packet(Op.WRITE, 5, 0, b"/bench/d%d/a/b\0v" % j))
        self.events.clear()


def run_end(way: str, kind: str, n: int) -> float:
    """Seconds of process CPU per transaction of ``kind`` ("conflict", "removal")."""
    load = EndLoad(way)
    step = getattr(load, kind)
    for i in range(n):
        step(i)
    return load.cpu / n


def main_ends(args) -> None:
    ways = ["END in Python", "after"]
    print("| transaction | END in Python (before) | END in C (after) | after / before |")
    print("|---|---:|---:|---:|")
    rows = (("conflict", "START, READ, (a WRITE outside), END T: EAGAIN"),
            ("removal", "START, RM of 3 nodes, WRITE, END T (2 watchers told)"))
    for kind, label in rows:
        best = {way: float("inf") for way in ways}
        for _ in range(args.reps):
            for way in ways:                    # interleaved: load drifts hit all alike
                best[way] = min(best[way], run_end(way, kind, args.n))
        print("| %s | %.1f us | %.1f us | %.2fx |" % (
            label, best["END in Python"] * 1e6, best["after"] * 1e6,
            best["after"] / best["END in Python"]))
    print("\nCPU per transaction (process time, best of %d x %d); lower is better."
          % (args.reps, args.n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="transactions per load")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--ends", action="store_true",
                        help="only conflicting commits and commits holding removals: "
                             "END in Python (as the engine left them before) and in C")
    args = parser.parse_args()
    if BACKEND != "cffi":
        sys.exit("bench_txn.py measures the C store's transactions: XSD_NATIVE=c")
    if args.ends:
        main_ends(args)
        return
    assert transaction_type(Daemon(Config(rundir="/nonexistent")).store) is not Transaction
    ways = ["before", "ops on C overlay", "START/END in Python", "after"]
    print("| transaction | " + " | ".join(ways) + " | after / before | after / START/END in "
          "Python |")
    print("|---|" + "---:|" * (len(ways) + 2))
    for pairs in (1, 10):
        best = {way: float("inf") for way in ways}
        for _ in range(args.reps):
            for way in ways:                    # interleaved: load drifts hit all alike
                best[way] = min(best[way], run_way(way, args.n, pairs))
        cells = " | ".join("%.1f us" % (best[w] * 1e6) for w in ways)
        print("| START, %d x (WRITE, READ), END | %s | %.2fx | %.2fx |"
              % (pairs, cells, best["after"] / best["before"],
                 best["after"] / best["START/END in Python"]))
    print("\nCPU per transaction (process time, best of %d x %d); lower is better."
          % (args.reps, args.n))


if __name__ == "__main__":
    main()
