#!/usr/bin/env python3
"""End to end: does a write get slower as watches pile up?  (issue 3)

One connection holds W watches (/w/<i>), a second drains their events, a third
writes /w/0 (one watch matches) as fast as it can with 32 requests in flight.
W = 10 and 10,000 run side by side, interleaved, on fresh daemons; printed:
writes/s for each, their ratio, and the daemon's memory per registered watch.

    python bench/bench_watch_scaling.py [--reps 3] [--writes 20000] [--backend c|python]
"""
import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from xenstore_protocol import Op                 # noqa: E402
from tests.daemon_process import DaemonProcess   # noqa: E402
from tests.wire import RawClient                 # noqa: E402

WINDOW = 32


def run_once(workdir: str, watches: int, writes: int, backend: str) -> tuple:
    env = dict(os.environ, XSD_NATIVE=backend)
    proc = DaemonProcess(workdir, ["--no-persist", "--log-level", "WARNING"], env=env).start()
    try:
        holder = RawClient(proc.socket_path, timeout=60)
        rss0 = proc.rss_kib()
        for i in range(watches):
            holder.send_packet(Op.WATCH, b"/w/%d\0t\0" % i)
            if i % 256 == 255:
                holder.reply()
                holder.replies.clear()
                holder.events.clear()
        holder.quiet_events(0.3)
        holder.replies.clear()
        rss1 = proc.rss_kib()
        stop = threading.Event()

        def drain():
            while not stop.is_set():
                holder._pump(0.1)
                holder.events.clear()
        thread = threading.Thread(target=drain, daemon=True)
        thread.start()
        writer = RawClient(proc.socket_path, timeout=60)
        start = time.perf_counter()
        in_flight = []
        for n in range(writes):
            in_flight.append(writer.send_packet(Op.WRITE, b"/w/0\0%d" % n))
            if len(in_flight) >= WINDOW:
                writer.reply(in_flight.pop(0))
        for req in in_flight:
            writer.reply(req)
        rate = writes / (time.perf_counter() - start)
        stop.set()
        thread.join()
        writer.close()
        holder.close()
        return rate, (rss1 - rss0) * 1024 / max(watches, 1)
    finally:
        proc.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--writes", type=int, default=20000)
    parser.add_argument("--backend", default="c", choices=("c", "python"))
    args = parser.parse_args()
    rates = {10: [], 10000: []}
    mem = []
    with tempfile.TemporaryDirectory() as work:
        for rep in range(args.reps):
            for watches in (10, 10000):
                rate, per_watch = run_once(os.path.join(work, f"{watches}-{rep}"), watches,
                                           args.writes, args.backend)
                rates[watches].append(rate)
                if watches == 10000:
                    mem.append(per_watch)
    low, high = statistics.median(rates[10]), statistics.median(rates[10000])
    print(f"backend {args.backend}, {args.writes} pipelined writes to /w/0, medians of {args.reps}")
    print("| watches held | writes/s |")
    print("|---:|---:|")
    print(f"| 10 | {low:.0f} |")
    print(f"| 10,000 | {high:.0f} |")
    print(f"ratio 10,000 / 10 = {high / low:.2f} (target >= 0.9)")
    print(f"daemon memory per registered watch: {statistics.median(mem):.0f} bytes (RSS delta)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
