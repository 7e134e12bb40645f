#!/usr/bin/env python3
"""Soak: 500 connections mixing reads, writes, watches and transactions for a bounded time.

Reports throughput, latency percentiles, the daemon's peak memory, and checks that
nothing was lost: every acknowledged write is readable afterwards (last value per
key), and every watch saw an event for every write made under it.

    python bench/soak.py [--connections 500] [--seconds 60] [--socket PATH]

Hostile mode (issue 12): unprivileged guests on the mock hypervisor's rings attack at
once for a bounded time (reads of missing deep paths and rewrites of one node inside
transactions, watches on 1,535-level paths, READs of missing deep paths), while dom0
sockets watch / with 1 KB tokens and never read, and one guest writes under its home
to feed them.  A dom0 client measures its request latency before, during and after;
the daemon's RSS and open descriptors are sampled.

    python bench/soak.py --hostile [--seconds 30] [--stuck 200] [--daemon-args '...']
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


# -- hostile mode ----------------------------------------------------------------
DEEP = "/a" * 1520


def _attack(kind, rundir, domid, deadline, counts):
    """One attacking guest (a process of its own: the latency probe must not share a GIL)."""
    from xsd.hypervisor.guest_client import GuestClient
    guest = GuestClient(rundir, domid, timeout=30)
    done = errors = 0
    i = 0
    if kind == "tx-missing-reads":
        tx = guest.transaction_start()
        while time.monotonic() < deadline:
            reply = guest.call(Op.READ, f"/z{i}{DEEP}".encode(), tx_id=tx)
            i += 1
            if reply.payload == b"ENOSPC\0":          # transaction-nodes: start afresh
                errors += 1
                guest.call(Op.TRANSACTION_END, b"F", tx_id=tx)
                tx = guest.transaction_start()
            done += 1
    elif kind == "tx-rewrites":
        name = ("data/" + "n" * 2000).encode()
        guest.call(Op.WRITE, payload=name + b"\0v")
        tx = guest.transaction_start()
        while time.monotonic() < deadline:
            ops = [(Op.WRITE, name + b"\0%d" % i)]
            if i % 3 == 2:
                ops += [(Op.SET_PERMS, name + b"\0b%d\0" % domid), (Op.RM, name + b"\0")]
            for op, payload in ops:
                errors += guest.call(op, payload=payload, tx_id=tx).op == Op.ERROR
                done += 1
            i += 1
            if i % 50000 == 0:
                guest.call(Op.TRANSACTION_END, b"F", tx_id=tx)
                tx = guest.transaction_start()
    elif kind == "deep-watches":
        while time.monotonic() < deadline:
            path = f"/w{i % 127:03d}" + "/a" * 1533
            token = b"%d" % (i // 127)
            errors += guest.call(Op.WATCH, path.encode(), token).op == Op.ERROR
            if i >= 126:                                # keep 127 registered: churn the oldest
                old = f"/w{(i - 126) % 127:03d}" + "/a" * 1533
                guest.call(Op.UNWATCH, old.encode(), b"%d" % ((i - 126) // 127))
            guest.take_events()
            done += 1
            i += 1
    elif kind == "missing-deep-reads":
        while time.monotonic() < deadline:
            errors += guest.call(Op.READ, f"/z{i}{DEEP}".encode()).op == Op.ERROR
            done += 1
            i += 1
    elif kind == "writer":                              # feeds the stuck dom0 watchers of /
        while time.monotonic() < deadline:
            errors += guest.call(Op.WRITE, payload=b"data/k%d\0%d" % (i % 500, i)).op == Op.ERROR
            guest.take_events()
            done += 1
            i += 1
    counts[kind] = (done, errors)
    guest.close()


def _fds(pid) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _probe(client, seconds, samples):
    """dom0's request latency (a READ and a WRITE, alternately) for ``seconds``."""
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        start = time.perf_counter()
        if i % 2:
            client.ok(Op.WRITE, payload=b"/probe/%d\0v" % (i % 100))
        else:
            client.ok(Op.READ, b"/local/domain/0/name")
        samples.append(time.perf_counter() - start)
        i += 1
        time.sleep(0.002)


def hostile(args) -> int:
    import multiprocessing
    import socket as socketlib
    from xsd.hv_cli import toolstack_introduce
    from xsd.hypervisor.guest_client import SocketClient
    from xsd.hypervisor.mock import MockControl
    kinds = ["tx-missing-reads", "tx-rewrites", "deep-watches", "missing-deep-reads", "writer"]
    with tempfile.TemporaryDirectory() as work:
        proc = DaemonProcess(os.path.join(work, "run"),
                             ["--log-level", "WARNING", *args.daemon_args.split()]).start()
        pid = proc.proc.pid
        hv = MockControl(proc.rundir)
        probe = SocketClient(proc.socket_path, timeout=30)
        domids = {}
        for kind in kinds:
            row = hv.create(name=kind)
            toolstack_introduce(probe, row)
            domids[kind] = row.domid

        def figures(name, samples, peak=None):
            q = statistics.quantiles(samples, n=100)
            rss = proc.rss_kib() / 1024
            print(f"{name:7s} RSS {rss:7.1f} MiB" + (f" (peak {peak / 1024:.1f})" if peak else "")
                  + f", fds {_fds(pid):4d}, dom0 latency p50 {q[49] * 1e6:6.0f} us, "
                  f"p99 {q[98] * 1e6:7.0f} us, max {max(samples) * 1e3:6.1f} ms ({len(samples)} requests)")

        before = []
        _probe(probe, 5, before)
        figures("before", before)
        ctx = multiprocessing.get_context("fork")
        counts = ctx.Manager().dict()       # its process forked before the stuck sockets open
        stuck = []
        for i in range(args.stuck):                     # dom0 watchers of / that never read
            sock = socketlib.socket(socketlib.AF_UNIX)
            sock.setsockopt(socketlib.SOL_SOCKET, socketlib.SO_RCVBUF, 4096)
            sock.connect(proc.socket_path)
            sock.sendall(Packet(Op.WATCH, 1, 0, b"/\0" + b"t" * 1000 + b"%d\0" % i).encode())
            stuck.append(sock)
        deadline = time.monotonic() + args.seconds
        attackers = [ctx.Process(target=_attack, args=(k, proc.rundir, domids[k], deadline, counts))
                     for k in kinds]
        for attacker in attackers:
            attacker.start()
        during, peak = [], 0
        while time.monotonic() < deadline:
            _probe(probe, 1, during)
            peak = max(peak, proc.rss_kib())
        for attacker in attackers:
            attacker.join(60)
        figures("during", during, peak)
        report = probe.ok(Op.CONTROL, b"memreport").decode()   # before the stuck sessions go
        dropped = [line for line in report.splitlines() if line.startswith("events-dropped")]
        for sock in stuck:
            sock.close()
        time.sleep(1)
        after = []
        _probe(probe, 5, after)
        figures("after", after)
        check = probe.ok(Op.CONTROL, b"check")
        probe.close()
        alive = proc.alive()
        proc.stop()
        stuck_lines = sum("not reading" in line for line in proc.log().splitlines())
    for kind in kinds:
        done, errors = counts.get(kind, (0, 0))
        print(f"  {kind:20s} {done:8d} requests, {errors:7d} refused")
    print(f"stuck dom0 watchers {args.stuck}; {dropped[0] if dropped else ''}; "
          f"'not reading' log lines {stuck_lines}")
    print(f"CONTROL check: {check!r}; daemon alive through it: {alive}")
    ok = alive and check == b"OK\0"
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--socket")
    parser.add_argument("--hostile", action="store_true",
                        help="guests attack (issue 12) while dom0's latency is measured")
    parser.add_argument("--stuck", type=int, default=200,
                        help="hostile mode: dom0 connections watching / that never read")
    parser.add_argument("--daemon-args", default="",
                        help="hostile mode: extra daemon options, e.g. '--out-high-water 65536'")
    args = parser.parse_args()
    if args.hostile:
        return hostile(args)
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
