#!/usr/bin/env python3
"""What the journal on tmpfs costs a request, in process: the daemon's CPU per request through
the request pump, in memory and journaling, without the event loop's and the socket's share.

    python bench/profile_journal.py                     # this tree
    python bench/profile_journal.py --base CHECKOUT     # and another checkout, interleaved
    python bench/profile_journal.py --variants          # this tree with parts of a commit
                                                        # switched off (what each costs)

One session (``direct_replies``, as a socket's) hands each request to
``RequestPump.serve_bytes`` as a transport would, and the loop is turned
(``_run_once``) whenever a flush was scheduled, as the event loop would before the client's
next request; ``time.thread_time`` around the whole phase, so system time (pwrite,
fdatasync) counts.  Phases: N creates, N overwrites of them, N reads, N/3 transactions
(start, a write, commit: CPU per request over all three); ``mc8``: 8 sessions each sending
one write per loop turn (group commit's case).  The daemon is built in process
(``open_daemon``) with its state directory on /dev/shm (tmpfs, as /var/run/xenstored is on
a Xen host).  Medians and minima over ``--reps`` interleaved runs: the minimum moves least
on a shared machine.  ``scheduled`` counts loop turns taken by scheduled flushes.

Variants (``--variants``; each on top of the one before, this tree only): ``fsync`` the
journal taken for a disk's (an fdatasync and pwrite per record), ``nosync`` no fdatasync,
``nowrite`` no write of the record at all.  (They switch this tree's attributes: run them on
the tree they were written for.)
"""
import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

VALUE = b"v" * 32
PHASES = ("create", "overwrite", "read", "tx", "mc8")


def measure(mode: str, n: int) -> dict:
    """CPU per request (us) of each phase on a fresh daemon; ``mode``: "memory", "journal",
    or a variant."""
    from xenstore_protocol import Op, Packet
    from xsd.config import Config
    from xsd.durability.persist import open_daemon
    from xsd.transport.pump import RequestPump

    state = tempfile.mkdtemp(prefix="xsd-profile-", dir="/dev/shm")
    try:
        d = open_daemon(Config(rundir=state, state_dir="" if mode == "memory" else state))
        loop = asyncio.new_event_loop()
        pump = RequestPump(d, loop, d.persist)
        last = [b""]
        s = d.open_session(lambda data: last.__setitem__(0, data), name="c", direct_replies=True)
        scheduled = [0]

        def serve(session, request: bytes) -> None:
            pump.serve_bytes(session, request)
            while pump._flush_scheduled:
                scheduled[0] += 1
                loop._run_once()

        serve(s, Packet(Op.WRITE, 1, 0, b"/warm\0x").encode())
        _switch_off(d.persist, mode)
        result = {}
        for phase in PHASES:
            scheduled[0] = 0
            if phase == "tx":
                count = n // 3 * 3
                started = time.thread_time()
                for i in range(n // 3):
                    serve(s, Packet(Op.TRANSACTION_START, 1, 0, b"\0").encode())
                    tx = int(last[0][16:-1])
                    serve(s, Packet(Op.WRITE, 2, tx, b"/bench/tx/k%d\0" % (i % 100) + VALUE).encode())
                    serve(s, Packet(Op.TRANSACTION_END, 3, tx, b"T\0").encode())
            elif phase == "mc8":
                sessions = [d.open_session(lambda data: None, name="m%d" % c, direct_replies=True)
                            for c in range(8)]
                turns = n // 8
                count = turns * 8
                requests = [[Packet(Op.WRITE, 1, 0, b"/mc%d/k%d\0" % (c, i) + VALUE).encode()
                             for c in range(8)] for i in range(turns)]
                started = time.thread_time()
                for turn in requests:
                    for session, request in zip(sessions, turn):
                        pump.serve_bytes(session, request)
                    while pump._flush_scheduled:
                        scheduled[0] += 1
                        loop._run_once()
            else:
                op = Op.READ if phase == "read" else Op.WRITE
                value = b"" if phase == "read" else b"\0" + (VALUE if phase == "create" else VALUE[1:])
                requests = [Packet(op, 1, 0, b"/bench/rw/k%d" % i + (value or b"\0")).encode()
                            for i in range(n)]
                count = n
                started = time.thread_time()
                for request in requests:
                    serve(s, request)
            result[phase] = (time.thread_time() - started) / count * 1e6
            result[phase + " scheduled"] = scheduled[0]
        if d.persist is not None:
            d.persist.close()
        loop.close()
        return result
    finally:
        shutil.rmtree(state, ignore_errors=True)


def _switch_off(persist, mode: str) -> None:
    if mode in ("memory", "journal"):
        return
    persist._unmap()                              # pwrite, as on a disk
    persist._remap = lambda: None
    persist.in_ram = False                        # an fdatasync per record, as on a disk
    if mode in ("nosync", "nowrite"):
        persist.fsync = "never"
        persist.group_commit.cheap = lambda: True
    if mode == "nowrite":
        persist._append = lambda data: len(data)


def child(tree: str, modes, n: int) -> dict:
    """``measure`` in a process importing ``tree``'s xsd."""
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", ",".join(modes),
                          "-n", str(n)], cwd=tree, check=True, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=tree, XSD_NATIVE="c")).stdout
    return json.loads(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=15000, help="requests per phase")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--base", help="another checkout's xsd, measured interleaved")
    parser.add_argument("--variants", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps({mode: measure(mode, args.n) for mode in args.child.split(",")}))
        return 0
    modes = ["memory", "journal"] + (["fsync", "nosync", "nowrite"] if args.variants else [])
    columns = {("this tree", mode): [] for mode in modes}
    if args.base:
        columns.update({("--base", mode): [] for mode in ("memory", "journal")})
    for rep in range(args.reps):
        for tree, label, run_modes in ((ROOT, "this tree", modes),
                                       (args.base, "--base", ["memory", "journal"])):
            if tree is None:
                continue
            for mode, result in child(tree, run_modes, args.n).items():
                columns[(label, mode)].append(result)
        print(f"rep {rep + 1}/{args.reps} done", file=sys.stderr)
    heads = [f"{label}, {mode}" for label, mode in columns]
    print("| CPU per request, us (min / median) | " + " | ".join(heads) + " |")
    print("|---|" + "---:|" * len(heads))
    for phase in PHASES:
        cells = []
        for runs in columns.values():
            values = [r[phase] for r in runs]
            sched = max(r[phase + " scheduled"] for r in runs)
            cells.append(f"{min(values):.2f} / {statistics.median(values):.2f}"
                         + (f" ({sched} sched.)" if sched else ""))
        print(f"| {phase} | " + " | ".join(cells) + " |")
    print(f"\nIn process, -n {args.n}, {args.reps} interleaved runs; state on /dev/shm.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
