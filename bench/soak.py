#!/usr/bin/env python3
"""Soak: 500 connections mixing reads, writes, watches and transactions for a bounded time.

Reports throughput, latency percentiles, the daemon's peak memory, and checks that
nothing was lost: every acknowledged write is readable afterwards (last value per
key), and every watch saw an event for every write made under it.

    python bench/soak.py [--connections 500] [--seconds 60] [--socket PATH]
"""
import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from xenstore_protocol import Decoder, Op, Packet   # noqa: E402
from tests.daemon_process import DaemonProcess      # noqa: E402


class Conn:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.decoder = Decoder()
        self.waiting = {}
        self.events = []
        self.req = 0
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self):
        while True:
            data = await self.reader.read(65536)
            if not data:
                break
            for packet in self.decoder.feed(data):
                if packet.op == Op.WATCH_EVENT:
                    self.events.append(packet.payload.split(b"\0")[0])
                else:
                    self.waiting.pop(packet.req_id).set_result(packet)

    async def call(self, op, payload, tx_id=0):
        self.req += 1
        future = asyncio.get_running_loop().create_future()
        self.waiting[self.req] = future
        self.writer.write(Packet(op, self.req, tx_id, payload).encode())
        return await future


async def client(n, path, deadline, stats, acked, rng):
    reader, writer = await asyncio.open_unix_connection(path)
    conn = Conn(reader, writer)
    base = b"/soak/%d" % n
    await conn.call(Op.MKDIR, base + b"\0")
    await conn.call(Op.WATCH, base + b"\0w\0")
    writes_under_watch = 0
    while time.monotonic() < deadline:
        kind = rng.random()
        key = base + b"/k%d" % rng.randrange(20)
        start = time.perf_counter()
        if kind < 0.5:
            await conn.call(Op.READ, key + b"\0")
        elif kind < 0.85:
            value = b"%d" % rng.randrange(1 << 30)
            reply = await conn.call(Op.WRITE, key + b"\0" + value)
            if reply.op == Op.WRITE:
                acked[key] = value
                writes_under_watch += 1
        else:
            reply = await conn.call(Op.TRANSACTION_START, b"\0")
            tx = int(reply.payload[:-1])
            value = b"tx%d" % rng.randrange(1 << 30)
            await conn.call(Op.WRITE, key + b"\0" + value, tx)
            end = await conn.call(Op.TRANSACTION_END, b"T\0", tx)
            if end.op == Op.TRANSACTION_END:
                acked[key] = value
                writes_under_watch += 1
        stats.append(time.perf_counter() - start)
    await asyncio.sleep(1.0)                     # let the last events arrive
    fired = sum(1 for e in conn.events if e != base)
    writer.close()
    conn.task.cancel()
    return writes_under_watch, fired


async def soak(path, connections, seconds):
    rng = random.Random(1)
    deadline = time.monotonic() + seconds
    stats, acked = [], {}
    results = await asyncio.gather(*(client(n, path, deadline, stats, acked, random.Random(rng.random()))
                                     for n in range(connections)))
    reader, writer = await asyncio.open_unix_connection(path)
    checker = Conn(reader, writer)
    lost = 0
    for key, value in acked.items():
        reply = await checker.call(Op.READ, key + b"\0")
        lost += reply.payload != value
    check = await checker.call(Op.CONTROL, b"check\0")
    writer.close()
    return stats, results, lost, len(acked), check.payload


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--socket")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        proc = None
        path = args.socket
        if path is None:
            proc = DaemonProcess(os.path.join(work, "run"), ["--log-level", "WARNING"]).start()
            path = proc.socket_path
        peak = 0
        async def run():
            nonlocal peak
            task = asyncio.ensure_future(soak(path, args.connections, args.seconds))
            while not task.done():
                if proc is not None:
                    peak = max(peak, proc.rss_kib())
                await asyncio.sleep(0.5)
            return task.result()
        started = time.monotonic()
        stats, results, lost, keys, check = asyncio.run(run())
        elapsed = time.monotonic() - started
        if proc is not None:
            proc.stop()
    writes = sum(r[0] for r in results)
    fired = sum(r[1] for r in results)
    q = statistics.quantiles(stats, n=100)
    print(f"connections {args.connections}, {args.seconds:.0f} s")
    print(f"requests {len(stats)} ({len(stats) / elapsed:.0f}/s incl. set-up), "
          f"latency p50 {q[49] * 1e6:.0f} us, p99 {q[98] * 1e6:.0f} us")
    print(f"daemon peak RSS {peak / 1024:.1f} MiB" if peak else "daemon peak RSS: not measured (--socket)")
    print(f"acknowledged keys {keys}, lost {lost}; writes under watches {writes}, events seen {fired}")
    print(f"CONTROL check: {check!r}")
    ok = lost == 0 and fired >= writes and check == b"OK\0"
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
