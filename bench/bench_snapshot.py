#!/usr/bin/env python3
"""How long a snapshot stops the request path: all at once against between requests, one run.

    python bench/bench_snapshot.py [--nodes 300000] [--value-bytes 64] [--state-dir DIR]

In-process, on a real event loop with real files: a daemon holding
``--nodes`` nodes writes its snapshot (issue 12, item 9) two ways:

- all at once (``Persistence.checkpoint``, what every snapshot was before:
  the loop, hence every client, stops for the whole of it);
- between requests (``start_snapshot`` and its steps, as a serving daemon
  now does): the longest single loop callback it runs is the longest a
  client can wait for it, while a client keeps sending READs and WRITEs of
  2 KiB values (the attack of the issue) whose answers are counted.

Printed: the pause of each (the floor is the longest callback of the run
without any snapshot: a batch of requests), the ratio, and how many
requests were answered while the snapshot was being written.  The state
directory defaults to one under the system's temporary directory.
"""
import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from xenstore_protocol import Op, Packet                 # noqa: E402
from xsd.config import Config                            # noqa: E402
from xsd.durability.persist import open_daemon           # noqa: E402
from xsd.transport.pump import RequestPump               # noqa: E402


def build(state_dir: str, nodes: int, value_bytes: int):
    d = open_daemon(Config(rundir=state_dir, state_dir=state_dir, fsync="batch"))
    s = d.open_session(lambda data: None, name="fill")
    value = b"v" * value_bytes
    for i in range(nodes):
        d.handle(s, Packet(Op.WRITE, 1, 0, b"/data/%d/%d\0" % (i // 1000, i) + value))
        if i % 10000 == 9999:
            d.flush()
    d.flush()
    d.close_session(s)
    return d


class LongestCallback:
    """The loop's longest callback, measured by asyncio's debug slow-callback hook."""

    def __init__(self, loop):
        self.longest = 0.0
        loop.set_debug(True)
        loop.slow_callback_duration = 0.0
        import asyncio.base_events as base_events
        self._logger = base_events.logger
        self._warning = self._logger.warning

        def warning(msg, *args, **kwargs):
            if msg.startswith("Executing") and len(args) >= 2:
                self.longest = max(self.longest, args[1])
                return None
            return self._warning(msg, *args, **kwargs)
        self._logger.warning = warning

    def close(self):
        self._logger.warning = self._warning


def serve_while(loop, d, pump, until, s, out) -> int:
    """A client's requests, one batch per loop turn, until ``until()``; how many answered."""
    big = b"x" * 2048
    answered = [0]

    async def client():
        i = 0
        while not until():
            i += 1
            op = Op.WRITE if i % 2 else Op.READ
            payload = b"/hot/%d\0" % (i % 64) + big if op == Op.WRITE else b"/data/0/0\0"
            pump.serve(s, [Packet(op, i, 0, payload)], [])
            pump.request_flush()
            await asyncio.sleep(0)
            answered[0] += len(out)
            out.clear()
    loop.run_until_complete(client())
    return answered[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=300_000)
    parser.add_argument("--value-bytes", type=int, default=64)
    parser.add_argument("--state-dir", default=None)
    args = parser.parse_args()
    base = args.state_dir or tempfile.mkdtemp(prefix="xsd-bench-snapshot-")
    try:
        print(f"building a store of {args.nodes} nodes ...", flush=True)
        d = build(base, args.nodes, args.value_bytes)
        p = d.persist
        loop = asyncio.new_event_loop()
        p.serve_on(loop)
        pump = RequestPump(d, loop, p)
        longest = LongestCallback(loop)
        out = []
        client = d.open_session(out.append, name="client")

        stop = time.monotonic() + 1.0
        serve_while(loop, d, pump, lambda: time.monotonic() > stop, client, out)
        floor = longest.longest

        started = time.monotonic()
        p.checkpoint()
        at_once = time.monotonic() - started

        longest.longest = 0.0
        before = p.snapshots
        started = time.monotonic()
        p.start_snapshot()
        answered = serve_while(loop, d, pump, lambda: p.snapshots > before, client, out)
        between = time.monotonic() - started
        pause = max(longest.longest, floor)
        longest.close()
        loop.close()
        p.close()
        print(f"{'snapshot of':<34}{args.nodes} nodes, {p.snapshot_size / 2**20:.1f} MiB")
        print(f"{'floor (longest batch, none)':<34}{floor * 1000:8.1f} ms")
        print(f"{'all at once: pause':<34}{at_once * 1000:8.1f} ms")
        print(f"{'between requests: longest pause':<34}{pause * 1000:8.1f} ms   "
              f"({at_once / pause:.0f}x shorter; snapshot took {between * 1000:.0f} ms, "
              f"{p.snapshot_steps} steps, {p.snapshot_steps_charged} charged to the writer, "
              f"{answered} requests answered meanwhile)")
    finally:
        if args.state_dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
