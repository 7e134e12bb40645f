#!/usr/bin/env python3
"""What --metrics costs the request path: xsd with metrics on against off, in one run.

    python bench/bench_metrics.py [--reps 7] [--seconds 2] [--clients 2]

Three daemons serve at once (in memory, --no-persist, so that the request path is all
there is to measure): "on" with ``--metrics`` and a scraper reading it every second, and
two with metrics off, "off" and "off2".  Each repetition runs the same load against each
in turn (the order rotates), ``--clients`` processes each keeping 32 requests in flight
(WRITE then READ of distinct keys).  Medians are reported; ``on / off`` is the cost, and
``off2 / off`` beside it is the floor: what two identical daemons differ by on this
machine at this moment.  A cost inside the floor is no measurable cost.  Beside the
rate, the daemon's own CPU time per request (/proc/PID/stat), which the other processes
on a shared machine disturb less; and, without sockets, READ through Daemon.handle with
the latency histogram on and off (best of the repetitions), the per-request cost alone.
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.daemon_process import DaemonProcess   # noqa: E402
from tests.wire import RawClient                 # noqa: E402
from xenstore_protocol import Op                 # noqa: E402

IN_FLIGHT = 32


def worker(socket_path: str, seconds: float, tag: str) -> None:
    """One load process: print how many requests were answered in ``seconds``."""
    with RawClient(socket_path, timeout=30) as c:
        done, i = 0, 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for _ in range(IN_FLIGHT // 2):
                key = f"/bench/{tag}/k{i % 1000}".encode()
                c.send_packet(Op.WRITE, key + b"\0value")
                c.send_packet(Op.READ, key + b"\0")
                i += 1
            for _ in range(IN_FLIGHT):
                c.reply()
            done += IN_FLIGHT
        print(done)


def cpu_seconds(pid: int) -> float:
    """User + system CPU the process has used (/proc/PID/stat, fields 14 and 15)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_load(daemon, seconds: float, clients: int):
    """(requests/s, the daemon's CPU microseconds per request) for one load run."""
    cpu0 = cpu_seconds(daemon.proc.pid)
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", daemon.socket_path,
                               str(seconds), f"c{n}"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
             for n in range(clients)]
    total = sum(int(p.communicate(timeout=seconds + 60)[0]) for p in procs)
    cpu = cpu_seconds(daemon.proc.pid) - cpu0
    return total / seconds, cpu / total * 1e6


def in_process(timed: bool, n: int = 200000) -> float:
    """Nanoseconds per READ through Daemon.handle, no socket: the request path alone."""
    from xsd.config import Config
    from xsd.core.daemon import Daemon
    from xenstore_protocol import Packet
    d = Daemon(Config(state_dir=""))
    if timed:
        d.stats.start_timing()
    s = d.open_session(lambda data: None)
    d.handle(s, Packet(Op.WRITE, 1, 0, b"/bench/key\0value"))
    packet = Packet(Op.READ, 2, 0, b"/bench/key\0")
    handle, flush = d.handle, d.flush
    started = time.perf_counter()
    for _ in range(n // 100):
        for _ in range(100):
            handle(s, packet)
        flush()
    return (time.perf_counter() - started) / n * 1e9


def scraper(path: str, stop: threading.Event, scrapes: list) -> None:
    """GET /metrics every second, as a Prometheus server would; keep the sizes."""
    while not stop.wait(1.0):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(path)
            s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            size = 0
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                size += len(chunk)
            scrapes.append(size)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], float(args.worker[1]), args.worker[2])
        return 0
    env = dict(os.environ, XSD_NATIVE=os.environ.get("XSD_NATIVE", "c"))
    with tempfile.TemporaryDirectory(prefix="xsd-bench-metrics-") as work:
        metrics_path = os.path.join(work, "on", "metrics.sock")
        daemons = {
            "on": DaemonProcess(os.path.join(work, "on"), ["--no-persist", "--metrics",
                                                           metrics_path], env=env),
            "off": DaemonProcess(os.path.join(work, "off"), ["--no-persist"], env=env),
            "off2": DaemonProcess(os.path.join(work, "off2"), ["--no-persist"], env=env),
        }
        for d in daemons.values():
            d.start()
        stop, scrapes = threading.Event(), []
        scraping = threading.Thread(target=scraper, args=(metrics_path, stop, scrapes))
        scraping.start()
        rates = {name: [] for name in daemons}
        cpu = {name: [] for name in daemons}
        names = list(daemons)
        inproc = {True: [], False: []}
        try:
            for rep in range(args.reps):
                order = names[rep % 3:] + names[:rep % 3]
                for name in order:
                    rate, us = run_load(daemons[name], args.seconds, args.clients)
                    rates[name].append(rate)
                    cpu[name].append(us)
                for timed in ((True, False) if rep % 2 else (False, True)):
                    inproc[timed].append(in_process(timed))
                print(f"rep {rep + 1}: " + "  ".join(
                    f"{n} {rates[n][-1]:,.0f}/s {cpu[n][-1]:.1f} us" for n in names),
                    file=sys.stderr)
        finally:
            stop.set()
            scraping.join()
            for d in daemons.values():
                d.stop()
    med = {name: statistics.median(r) for name, r in rates.items()}
    us = {name: statistics.median(r) for name, r in cpu.items()}
    ns = {timed: min(r) for timed, r in inproc.items()}     # best of: the least disturbed
    print(f"medians of {args.reps} interleaved runs, {args.clients} clients x {IN_FLIGHT} "
          f"requests in flight, {args.seconds:g} s each")
    print(f"{'daemon':8} {'requests/s':>12} {'daemon CPU us/request':>22}")
    for name in names:
        print(f"{name:8} {med[name]:>12,.0f} {us[name]:>22.2f}")
    print(f"scrapes of 'on' during the run: {len(scrapes)}, "
          f"{statistics.median(scrapes or [0]):,.0f} bytes each")
    print(f"{'':28}{'on / off':>10} {'floor: off2 / off':>18}")
    print(f"{'requests/s':28}{med['on'] / med['off']:>10.3f} {med['off2'] / med['off']:>18.3f}")
    print(f"{'daemon CPU per request':28}{us['on'] / us['off']:>10.3f} "
          f"{us['off2'] / us['off']:>18.3f}")
    print(f"in process, READ through Daemon.handle, best of {args.reps}: {ns[False]:.0f} ns "
          f"untimed, {ns[True]:.0f} ns timed (--metrics: latency histogram on): "
          f"{ns[True] / ns[False]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
