#!/usr/bin/env python3
"""CPU per WATCH and UNWATCH on the C store, before and after they moved to the C engine.

    python bench/bench_watch_register.py            # 10 sessions x 1000 watches, best of 5
    python bench/bench_watch_register.py -w 200 --reps 3

One in-process daemon on the C store (no sockets: what is measured is the request path;
the event loop and the kernel cost the same either way) gets, from a privileged session
and a guest (relative paths, within its watches and memory quotas), each WATCH and then
each UNWATCH as its own batch, through the transports' ``RequestPump`` (the engine first,
``dispatch`` for what it leaves), the output flushed after each as a socket's would be:
the registration of xsbench's watch:W (a round trip each, its initial event read).
Three ways, interleaved:

- before: ``--python-fires`` (the engine without the C registry: WATCH and UNWATCH are
  Python's, every other request the engine's; what the daemon did before for these two);
- ``--python-requests``: every request through dispatch;
- after: the engine answering WATCH and UNWATCH under the C registry.

Printed: microseconds of process CPU per request (best of --reps) and after / before.
XSD_NATIVE=c only.
"""
import argparse
import os
import sys
import time
from collections import deque

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from xenstore_protocol import Decoder, Op, Packet      # noqa: E402
from xsd._native import BACKEND                         # noqa: E402
from xsd.config import Config                           # noqa: E402
from xsd.core.daemon import Daemon                      # noqa: E402
from xsd.transport.pump import RequestPump              # noqa: E402

WAYS = {"before": {"python_fires": True}, "--python-requests": {"python_requests": True},
        "after": {}}


class Load:
    def __init__(self, way: str, guest: bool, watches: int):
        d = self.daemon = Daemon(Config(rundir="/nonexistent", no_domain_init=True,
                                        **WAYS[way]))
        self.pump = RequestPump(d)
        self.out = []
        if guest:
            d.quotas.set("watches", watches + 1, domid=1)
            d.quotas.set("memory", 1 << 24, domid=1)
        self.session = d.open_session(self.out.append, domid=1 if guest else 0,
                                      privileged=not guest, name="bench")
        self.session.direct_replies = False
        self.prefix = b"data/w" if guest else b"/w"
        self.send(Op.WATCH, b"%s\0first\0" % self.prefix)   # a session's first, not timed

    def send(self, op: int, payload: bytes) -> bytes:
        d, s = self.daemon, self.session
        rest = self.pump.serve_bytes(s, Packet(op, 1, 0, payload).encode())
        if rest:
            self.pump.serve(s, Decoder().feed(rest), deque())
        d.flush()
        out = b"".join(self.out)
        self.out.clear()
        return out


def run_way(way: str, guest: bool, sessions: int, watches: int):
    """Seconds of process CPU per WATCH and per UNWATCH."""
    spent = {Op.WATCH: 0.0, Op.UNWATCH: 0.0}
    for _ in range(sessions):
        load = Load(way, guest, watches)
        for op in (Op.WATCH, Op.UNWATCH):
            payloads = [b"%s/%d\0t%d\0" % (load.prefix, i, i) for i in range(watches)]
            started = time.process_time()
            for payload in payloads:
                out = load.send(op, payload)
            spent[op] += time.process_time() - started
            assert out.startswith(Packet(op, 1, 0, b"OK\0").encode()), out
    return {op: seconds / (sessions * watches) for op, seconds in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-w", type=int, default=1000, help="watches per session")
    parser.add_argument("-s", type=int, default=10, help="sessions per load")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    if BACKEND != "cffi":
        sys.exit("bench_watch_register.py measures the C engine: XSD_NATIVE=c")
    print("| request | " + " | ".join(WAYS) + " | after / before |")
    print("|---|" + "---:|" * (len(WAYS) + 1))
    for guest in (False, True):
        best = {(way, op): float("inf") for way in WAYS for op in (Op.WATCH, Op.UNWATCH)}
        for _ in range(args.reps):
            for way in WAYS:                    # interleaved: load drifts hit all alike
                for op, seconds in run_way(way, guest, args.s, args.w).items():
                    best[way, op] = min(best[way, op], seconds)
        for op in (Op.WATCH, Op.UNWATCH):
            cells = " | ".join("%.1f us" % (best[way, op] * 1e6) for way in WAYS)
            print("| %s, %s | %s | %.2fx |" % (
                op.name, "guest, relative" if guest else "dom0, absolute", cells,
                best["after", op] / best["before", op]))
    print("\nCPU per request (process time, best of %d x %d sessions x %d watches); lower is "
          "better." % (args.reps, args.s, args.w))


if __name__ == "__main__":
    main()
