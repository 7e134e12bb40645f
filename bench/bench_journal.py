#!/usr/bin/env python3
"""Write throughput with the journal on and off, 1 and 16 writing clients, side by side in one run.

    python bench/bench_journal.py [--seconds 1.5] [--reps 7] [--state-dir DIR]

One daemon per configuration, all started up front: ``--no-persist`` (the
Xen daemons' in-memory store), ``--fsync batch`` (the default: one write and
one fsync per batch, before the replies leave), and for reference ``--fsync
never``.  Clients are synchronous (one WRITE in flight each, as a
libxenstore caller) over raw sockets, each writing its own 1000 keys of 32
bytes round-robin: "1" and "16" drive them from this one process (a cheap,
fast client: the harshest case for fsync, whose cost is then large against a
round), "16 procs" from 16 processes, one client each, as 16 separate
programs would.  Measurements are short and
interleaved (this machine is shared and noisy), medians reported; the last
column is the rate over in-memory with as many clients.  The state directory defaults to one under the system's temporary
directory: put it on the disk you mean to measure (tmpfs makes fsync free).
"""
import argparse
import multiprocessing
import os
import select
import shutil
import socket
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.daemon_process import DaemonProcess        # noqa: E402
from xenstore_protocol import Op                      # noqa: E402
from xenstore_protocol.constants import HEADER        # noqa: E402

MODES = {
    "in-memory": ["--no-persist"],
    "journal, fsync batch": ["--fsync", "batch"],
    "journal, fsync never": ["--fsync", "never"],
}
CLIENTS = (1, 16, "16 procs")
PROCESSES = 16
VALUE = b"0123456789abcdef0123456789abcdef"


def drive(path: str, clients: int, seconds: float, first: int = 0) -> float:
    """Writes acknowledged per second over ``seconds``, after a short warm-up; the clients
    write under /bench/c<first>... ."""
    socks = []
    for _ in range(clients):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        socks.append(s)
    requests = []
    for i in range(clients):
        requests.append([HEADER.pack(Op.WRITE, 1, 0, len(p)) + p
                         for p in (b"/bench/c%d/k%d\0" % (first + i, k) + VALUE
                                   for k in range(1000))])
    counters = [0] * clients
    index = {s.fileno(): i for i, s in enumerate(socks)}
    for i, s in enumerate(socks):
        s.sendall(requests[i][0])
    done = 0
    started = None
    warmup_end = time.monotonic() + min(0.5, seconds / 4)
    end = warmup_end + seconds
    buffers = [b""] * clients
    while True:
        now = time.monotonic()
        if started is None and now >= warmup_end:
            started, done = now, 0
        if now >= end:
            break
        ready, _, _ = select.select(socks, [], [], 1.0)
        for s in ready:
            i = index[s.fileno()]
            data = buffers[i] + s.recv(65536)
            # One reply per request in flight: header + payload.
            while len(data) >= HEADER.size:
                op, _, _, length = HEADER.unpack_from(data)
                if len(data) < HEADER.size + length:
                    break
                if op != Op.WRITE:
                    raise RuntimeError(f"write failed: {data[HEADER.size:HEADER.size + length]!r}")
                data = data[HEADER.size + length:]
                done += 1
                counters[i] += 1
                s.sendall(requests[i][counters[i] % 1000])
            buffers[i] = data
    elapsed = time.monotonic() - started
    for s in socks:
        s.close()
    return done / elapsed


def _one_client(job) -> float:
    path, index, seconds = job
    return drive(path, 1, seconds, first=index)


def drive_processes(pool, path: str, seconds: float) -> float:
    """The summed rate of PROCESSES one-client processes, measuring the same interval."""
    return sum(pool.map(_one_client, [(path, i, seconds) for i in range(PROCESSES)]))


def fsync_latency(directory: str, count: int = 400) -> float:
    """Median seconds of one journal-like flush on this disk: a 300-byte pwrite into
    preallocated space, then fdatasync (what --fsync batch pays per batch)."""
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.posix_fallocate(fd, 0, count * 300 + 4096)
        os.fdatasync(fd)
        times = []
        for i in range(count):
            t0 = time.perf_counter()
            os.pwrite(fd, b"x" * 300, i * 300)
            os.fdatasync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        os.unlink(path)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="per measurement")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--state-dir", default=None, help="where the daemons' run dirs go")
    args = parser.parse_args()
    root = args.state_dir or tempfile.gettempdir()
    work = tempfile.mkdtemp(prefix="xsd-bench-", dir=root)
    daemons = {}
    try:
        for i, (mode, options) in enumerate(MODES.items()):
            daemons[mode] = DaemonProcess(os.path.join(work, f"run{i}"),
                                          ["--no-domain-init", *options]).start()
        results = {(m, c): [] for m in MODES for c in CLIENTS}
        fsyncs = []
        pool = multiprocessing.Pool(PROCESSES)
        for rep in range(args.reps):
            fsyncs.append(fsync_latency(work))
            for clients in CLIENTS:
                for mode, proc in daemons.items():
                    if isinstance(clients, int):
                        rate = drive(proc.socket_path, clients, args.seconds)
                    else:
                        rate = drive_processes(pool, proc.socket_path, args.seconds)
                    results[(mode, clients)].append(rate)
                    print(f"  rep {rep + 1}: {mode:22} {clients!s:>8} clients {rate:10.0f} writes/s",
                          file=sys.stderr)
        pool.close()
    finally:
        for proc in daemons.values():
            proc.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nxsd write throughput (writes/s, median of {args.reps} interleaved runs of "
          f"{args.seconds:g} s); state on {root} ({_fstype(root)}), {os.cpu_count()} CPUs\n")
    print(f"| {'mode':22} | {'clients':>8} | {'writes/s':>9} | {'vs in-memory':>12} |")
    print(f"|{'-' * 24}|{'-' * 9}:|{'-' * 10}:|{'-' * 13}:|")
    for clients in CLIENTS:
        base = statistics.median(results[("in-memory", clients)])
        for mode in MODES:
            rate = statistics.median(results[(mode, clients)])
            print(f"| {mode:22} | {clients!s:>8} | {rate:9.0f} | {rate / base:11.2f}x |")
    # Synchronous clients: a round serves every client once, then one flush; even with
    # every client in every batch and nothing else added, fsync batch reaches at most
    # round / (round + flush) of the in-memory rate.
    flush = statistics.median(fsyncs)
    print(f"\nflush on this disk (300-byte pwrite into allocated space + fdatasync, median of "
          f"{args.reps} x 400, measured between the runs): {flush * 1e6:.0f} us")
    for clients in CLIENTS:
        base = statistics.median(results[("in-memory", clients)])
        round_time = (clients if isinstance(clients, int) else PROCESSES) / base
        print(f"  {clients!s:>8} clients: in-memory round {round_time * 1e6:.0f} us; ceiling for "
              f"fsync batch = round / (round + flush) = {round_time / (round_time + flush):.2f}x")
    return 0


def _fstype(path: str) -> str:
    """The file system type holding ``path`` (from /proc/mounts), for the report."""
    best, kind = "", "?"
    real = os.path.realpath(path)
    try:
        with open("/proc/mounts", encoding="ascii", errors="replace") as f:
            for line in f:
                fields = line.split()
                mount = fields[1]
                if (real == mount or real.startswith(mount.rstrip("/") + "/")) and len(mount) > len(best):
                    best, kind = mount, fields[2]
    except OSError:
        pass
    return kind


if __name__ == "__main__":
    sys.exit(main())
