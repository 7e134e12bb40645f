"""watchlib delivery benchmark: events/s handed to callbacks, and write -> callback latency.

    .venv/bin/python bench/bench_watchlib.py            # 1, 100, 10000 subscriptions
    .venv/bin/python bench/bench_watchlib.py --subs 1 100 --events 5000 --samples 1000

Starts its own xsd (tests.daemon_process) on a temporary run dir.  For each
number S of subscriptions, two layouts, each measured in the same run:

- ``distinct``: S literal subscriptions, each on its own path (S daemon
  watches); the writes hit one of them.  Costs: the daemon's watch lookup,
  watchlib's token lookup.
- ``glob``: S glob subscriptions ``/bench/g/*/s<i>`` under one prefix (one
  daemon watch, shared); each event matches one of them.  Cost: watchlib's
  matching (``watchlib.patterns.BACKEND``: xsd's C glob set, or PyGlobSet).

Throughput: another client writes N distinct keys, pipelined (64 in flight);
timed from the first send until the callback has seen the N-th event.
Latency: one write at a time; from just before sending the write until the
callback runs (same process, time.perf_counter), median and p99.
Client and daemon share the machine's CPUs; numbers move by a few % run to run.
"""
import argparse
import os
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.daemon_process import DaemonProcess  # noqa: E402
from watchlib import Client  # noqa: E402
from watchlib import patterns  # noqa: E402
from xenstore_protocol import Op  # noqa: E402


def start_daemon(rundir):
    for args in (["--no-persist"], []):
        try:
            return DaemonProcess(rundir, args).start()
        except RuntimeError:
            continue
    raise RuntimeError("xsd did not start")


class Counter:
    def __init__(self, target=None):
        self.n = 0
        self.target = target
        self.done = threading.Event()
        self.stamp = None

    def __call__(self, item):
        self.stamp = time.perf_counter()
        self.n += 1
        if self.target is not None and self.n >= self.target:
            self.done.set()


def subscribe(client, layout, count, callback):
    """``count`` subscriptions; ``callback`` on the one the writes hit (index 0)."""
    subs = []
    t0 = time.perf_counter()
    for i in range(count):
        pattern = f"/bench/d/s{i}" if layout == "distinct" else f"/bench/g/*/s{i}"
        subs.append(client.watch(pattern, callback if i == 0 else _noop, initial=False,
                                 max_pending=1 << 20))
    return subs, time.perf_counter() - t0


def _noop(item):
    pass


def key(layout, j):
    return f"/bench/d/s0/k{j}" if layout == "distinct" else f"/bench/g/k{j}/s0"


def throughput(client, writer, layout, events):
    counter = Counter(events)
    subs, reg_s = subscribe(client, layout, args.cur_subs, counter)
    client.sync()
    conn = writer._conn
    window = []
    t0 = time.perf_counter()
    for j in range(events):
        window.append(conn.send(Op.WRITE, key(layout, j).encode() + b"\0x"))
        if len(window) >= 64:
            conn.wait(window.pop(0), 30)
    for p in window:
        conn.wait(p, 30)
    if not counter.done.wait(120):
        raise RuntimeError(f"only {counter.n} of {events} events delivered")
    elapsed = counter.stamp - t0
    client.sync()
    for s in subs:
        s.cancel()
    writer.rm("/bench")
    return events / elapsed, reg_s


def latency(client, writer, layout, samples):
    state = {"t": None, "lat": [], "ev": threading.Event()}

    def cb(item):
        state["lat"].append(time.perf_counter() - state["t"])
        state["ev"].set()

    subs, _ = subscribe(client, layout, args.cur_subs, cb)
    client.sync()
    for j in range(samples):
        state["ev"].clear()
        state["t"] = time.perf_counter()
        writer.write(key(layout, j % 50), b"v")
        if not state["ev"].wait(30):
            raise RuntimeError("no event")
    client.sync()
    for s in subs:
        s.cancel()
    writer.rm("/bench")
    lat = sorted(state["lat"])
    return lat[len(lat) // 2] * 1e6, lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e6


def main():
    global args
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subs", type=int, nargs="+", default=[1, 100, 10000])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--layouts", nargs="+", default=["distinct", "glob"])
    args = parser.parse_args()
    print(f"watchlib matcher: {patterns.BACKEND} ({patterns.BACKEND_REASON})")
    with tempfile.TemporaryDirectory(prefix="bench-watchlib-") as tmp:
        daemon = start_daemon(os.path.join(tmp, "run"))
        try:
            with Client(daemon.socket_path) as client, Client(daemon.socket_path) as writer:
                rows = []
                args.cur_subs = 1
                throughput(client, writer, "distinct", 2000)      # warm up both processes
                for subs in args.subs:
                    args.cur_subs = subs
                    for layout in args.layouts:
                        rate, reg_s = throughput(client, writer, layout, args.events)
                        p50, p99 = latency(client, writer, layout, args.samples)
                        rows.append((subs, layout, rate, p50, p99, reg_s))
                        print(f"  S={subs:<6} {layout:<8} {rate:9.0f} events/s   "
                              f"p50 {p50:7.1f} us   p99 {p99:7.1f} us   "
                              f"(subscribing took {reg_s:.2f} s)", flush=True)
        finally:
            daemon.stop()
    print()
    print("| subscriptions | layout | events/s to callbacks | write->callback p50 (us) | p99 (us) |")
    print("|---:|---|---:|---:|---:|")
    for subs, layout, rate, p50, p99, _ in rows:
        print(f"| {subs} | {layout} | {rate:.0f} | {p50:.0f} | {p99:.0f} |")
    base = {layout: (rate, p50) for subs, layout, rate, p50, _, _ in rows if subs == args.subs[0]}
    print()
    for subs, layout, rate, p50, _, _ in rows:
        if subs != args.subs[0]:
            r0, l0 = base[layout]
            print(f"S={subs} {layout}: throughput x{rate / r0:.2f}, p50 x{p50 / l0:.2f} "
                  f"vs S={args.subs[0]}")


if __name__ == "__main__":
    main()
