#!/usr/bin/env python3
"""CPU of a journaled guest's WATCH and UNWATCH, of a session's first WATCH, and what a
session that never watches costs: this tree beside another checkout (``--base``).

    python bench/bench_watch_journaled.py --base ../main          # best of 5
    python bench/bench_watch_journaled.py --base ../main -w 200 --reps 3

Each tree runs in its own process (``--base``'s imports its own modules and build), the
two interleaved rep by rep.  In each, in-process daemons on the C store (no sockets: what
is measured is the request path), requests fed as a transport feeds them, through the
``RequestPump`` (the engine first, ``dispatch`` for what it leaves), one batch each,
flushed after each as a ring's output is:

- guest WATCH / UNWATCH, journaled: a daemon journaling to a state directory on tmpfs
  (/dev/shm, as /var/run/xenstored is on a Xen host; ``--fsync batch``, the default), an
  introduced guest whose watches the journal keeps (relative paths, within its quotas):
  -w WATCHes, then -w UNWATCHes, each its own batch and journal record;
- first WATCH of a session: -s fresh privileged sessions on an in-memory daemon, each
  sending one READ (configuring it for the engine) and then its first WATCH, timed;
- a session that never watches: -s sessions each sending one READ and kept open; the
  Python heap (tracemalloc) and the C watch registry's bytes they add, per session, and
  the CPU of open + READ + close per session.

Printed: microseconds of process CPU per request (best of --reps) and bytes per session,
with this tree / base.  XSD_NATIVE=c only.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import deque

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.environ.get("XSD_BENCH_TREE", ROOT))   # the tree measured

from xenstore_protocol import Decoder, Op, Packet      # noqa: E402
from xsd._native import BACKEND                         # noqa: E402
from xsd.config import Config                           # noqa: E402
from xsd.core.daemon import Daemon                      # noqa: E402
from xsd.durability.persist import open_daemon          # noqa: E402
from xsd.transport.pump import RequestPump              # noqa: E402

GUEST = 5


def send(pump, session, op: int, payload: bytes) -> bytes:
    """One request as its own batch, flushed (its journal record, then its output)."""
    rest = pump.serve_bytes(session, Packet(op, 1, 0, payload).encode())
    if rest:
        pump.serve(session, Decoder().feed(rest), deque())
    pump.daemon.flush()
    return rest


def guest_watches(watches: int) -> dict:
    """Seconds of CPU per journaled guest WATCH and UNWATCH."""
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) \
            as state:
        d = open_daemon(Config(rundir=state, state_dir=state, no_domain_init=True))
        d.domains.introduce(GUEST, 1, 1)
        d.quotas.set("watches", watches + 1, domid=GUEST)
        d.quotas.set("memory", 1 << 24, domid=GUEST)
        d.state_changed()
        pump = RequestPump(d)
        out = []
        s = d.open_session(out.append, domid=GUEST, privileged=False, name="guest")
        s.direct_replies = False
        s.journal_watches = True
        send(pump, s, Op.READ, b"/\0")           # configured, as after its first batch
        spent = {}
        for op in (Op.WATCH, Op.UNWATCH):
            payloads = [b"data/w/%d\0t%d\0" % (i, i) for i in range(watches)]
            started = time.process_time()
            for payload in payloads:
                send(pump, s, op, payload)
            spent[op.name] = (time.process_time() - started) / watches
            assert b"".join(out).count(Packet(op, 1, 0, b"OK\0").encode()) == watches
            out.clear()
        assert not d.persist.guest_watches.by_domid     # every change heard, in order
        d.persist.close()
        return spent


def first_watches(sessions: int) -> dict:
    """Seconds of CPU per session's first WATCH (after one READ configured the session)."""
    d = Daemon(Config(rundir="/nonexistent", no_domain_init=True))
    pump = RequestPump(d)
    opened = []
    for _ in range(sessions):
        s = d.open_session(lambda data: None, domid=0, privileged=True, name="c")
        send(pump, s, Op.READ, b"/\0")
        opened.append(s)
    started = time.process_time()
    for i, s in enumerate(opened):
        send(pump, s, Op.WATCH, b"/w/%d\0t\0" % i)
    spent = (time.process_time() - started) / sessions
    return {"first WATCH": spent}


def idle_sessions(sessions: int) -> dict:
    """Per session that never watches: bytes held (Python heap, C registry) while open,
    and CPU of open + one READ + close."""
    d = Daemon(Config(rundir="/nonexistent", no_domain_init=True))
    pump = RequestPump(d)
    reg_before = d.watches.stats()["bytes"]
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    opened = []
    for _ in range(sessions):
        s = d.open_session(lambda data: None, domid=0, privileged=True, name="c")
        send(pump, s, Op.READ, b"/\0")
        opened.append(s)
    heap = (tracemalloc.get_traced_memory()[0] - base) / sessions
    tracemalloc.stop()
    reg = (d.watches.stats()["bytes"] - reg_before) / sessions
    for s in opened:
        d.close_session(s)
    started = time.process_time()
    for _ in range(sessions):
        s = d.open_session(lambda data: None, domid=0, privileged=True, name="c")
        send(pump, s, Op.READ, b"/\0")
        d.close_session(s)
    spent = (time.process_time() - started) / sessions
    return {"idle heap B": heap, "idle registry B": reg, "open+READ+close": spent}


def measure(watches: int, sessions: int) -> dict:
    return {**guest_watches(watches), **first_watches(sessions), **idle_sessions(sessions)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-w", type=int, default=1000, help="a guest's watches")
    parser.add_argument("-s", type=int, default=2000, help="sessions")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--base", metavar="TREE", help="another checkout, measured beside")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if BACKEND != "cffi":
        sys.exit("bench_watch_journaled.py measures the C engine: XSD_NATIVE=c")
    if args.child:
        print(json.dumps(measure(args.w, args.s)))
        return
    trees = {"this tree": ROOT, **({"base": os.path.abspath(args.base)} if args.base else {})}
    best = {}
    for _ in range(args.reps):
        for name, tree in trees.items():        # interleaved: load drifts hit both alike
            env = dict(os.environ, XSD_BENCH_TREE=tree, PYTHONPATH=tree, XSD_NATIVE="c",
                       PYTHONDONTWRITEBYTECODE="1")     # nothing written into --base
            got = json.loads(subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--child", "-w", str(args.w),
                 "-s", str(args.s)], cwd=tree, env=env, check=True, capture_output=True,
                text=True).stdout)
            for key, value in got.items():
                best[name, key] = min(best.get((name, key), float("inf")), value)
    keys = [k for n, k in best if n == "this tree"]
    print("| | " + " | ".join(trees) + (" | this tree / base |" if args.base else " |"))
    print("|---|" + "---:|" * (len(trees) + bool(args.base)))
    for key in keys:
        unit = key.endswith(" B")
        cells = [("%.0f B" if unit else "%.1f us") % (best[name, key] * (1 if unit else 1e6))
                 for name in trees]
        ratio = (" | %.2fx" % (best["this tree", key] / best["base", key])
                 if args.base and best["base", key] else (" | -" if args.base else ""))
        label = key if unit else "CPU per " + key
        print("| %s | %s%s |" % (label, " | ".join(cells), ratio))
    print("\nBest of %d reps; a journaled guest's %d WATCHes then UNWATCHes, %d sessions; "
          "process CPU time; lower is better." % (args.reps, args.w, args.s))


if __name__ == "__main__":
    main()
