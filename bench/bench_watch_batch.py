#!/usr/bin/env python3
"""The daemon's CPU per watched write when writes come in batches, side by side in one run.

    python bench/bench_watch_batch.py                 # 100,000 writes, batches of 500
    python bench/bench_watch_batch.py -n 50000 --other-watches 10000

Two real daemons in memory, started in turn and measured the same way: ``xsd`` (the
request engine fires watched changes through the C registry and returns the deliveries
with its batch: one crossing per batch) and ``xsd --python-fires`` (the engine stops
after each watched change and Python fires it).  One connection watches /w (and,
with --other-watches, that many paths elsewhere); another sends WRITEs to distinct
nodes under /w, ``--batch`` in one send, and reads their replies before the next
batch; the watcher reads every event.  Printed: the daemon's user + system CPU per
write (/proc/PID/stat, so the client's own cost is not in it), writes/s, and the
ratio.  The do-nothing floors of bench_floors.py have no watches, so none is beside.
"""
import argparse
import os
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.daemon_process import DaemonProcess   # noqa: E402
from tests.wire import RawClient                 # noqa: E402
from xenstore_protocol import Op, Packet         # noqa: E402

REPLY = len(Packet(Op.WRITE, 0, 0, b"OK\0").encode())
COLUMNS = (("xsd --python-fires", ["--python-fires"]), ("xsd", []))


def cpu_seconds(pid: int) -> float:
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(args, writes: int, batch: int, others: int):
    """-> (daemon CPU microseconds per write, writes/s) for one fresh daemon."""
    daemon = DaemonProcess(tempfile.mkdtemp(prefix="xsd-bench-"),
                           ["--no-domain-init", "--no-persist", *args]).start()
    try:
        watcher = RawClient(daemon.socket_path, timeout=60)
        writer = RawClient(daemon.socket_path, timeout=60)
        for first in range(0, others, 500):
            for i in range(first, min(first + 500, others)):
                watcher.ok(Op.WATCH, b"/o/%d" % i, b"k%d" % i)
        watcher.ok(Op.WATCH, b"/w", b"t")
        watcher.wait_events(others + 1, timeout=60)     # the initial events
        seen = [0]

        def read_events():
            while seen[0] < writes:
                data = watcher.sock.recv(1 << 20)
                if not data:
                    return
                seen[0] += data.count(b"\0t\0")

        reader = threading.Thread(target=read_events)
        reader.start()
        cpu, started = cpu_seconds(daemon.proc.pid), time.perf_counter()
        for first in range(0, writes, batch):
            count = min(batch, writes - first)
            writer.sock.sendall(b"".join(
                Packet(Op.WRITE, first + i + 1, 0, b"/w/k%d\0v" % (first + i)).encode()
                for i in range(count)))
            want, got = REPLY * count, 0
            while got < want:
                got += len(writer.sock.recv(want - got))
        reader.join(60)
        elapsed = time.perf_counter() - started
        if seen[0] != writes:
            raise RuntimeError("%d events for %d writes" % (seen[0], writes))
        return (cpu_seconds(daemon.proc.pid) - cpu) / writes * 1e6, writes / elapsed
    finally:
        daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=100000, help="writes (each fires one event)")
    parser.add_argument("--batch", type=int, default=500, help="writes per send (<= 1024: "
                        "the watcher's events of one batch stay under --max-watch-events)")
    parser.add_argument("--other-watches", type=int, default=0)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    results = {name: [] for name, _ in COLUMNS}
    for rep in range(args.reps):                       # interleaved: drift hits both
        for name, extra in COLUMNS:
            results[name].append(measure(extra, args.n, args.batch, args.other_watches))
    print("| %d watched writes, batches of %d, %d other watches | CPU/write (us) | writes/s |"
          % (args.n, args.batch, args.other_watches))
    print("|---|---:|---:|")
    medians = {}
    for name, _ in COLUMNS:
        runs = sorted(results[name])
        medians[name] = runs[len(runs) // 2]
        print("| %s | %.2f | %.0f |" % (name, *medians[name]))
    old, new = medians["xsd --python-fires"][0], medians["xsd"][0]
    print("CPU per watched write, xsd / --python-fires: %.2f" % (new / old if old else 0))


if __name__ == "__main__":
    main()
