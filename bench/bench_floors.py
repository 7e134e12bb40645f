#!/usr/bin/env python3
"""Issue 17's targets, measured: xsd beside the Xen daemons and two do-nothing responders.

    python bench/bench_floors.py                       # every row, -n 10000, 2 reps: ~6 min here
    python bench/bench_floors.py --rows rw,mc8 --reps 1 -n 5000   # a quick look at some rows

The anchors' load generator over libxenstore (../shared/anchors/xsbench.c, built into a
temporary directory) drives every daemon in the same run, daemons and repetitions
interleaved, medians printed:

- C floor: bench/floors/floor_c.c (built here), canned reply per request, no store;
- uvloop floor: bench/floors/floor_uvloop.py, the same in Python, one write per batch;
- C xenstored and oxenstored (no access log), Debian's, through the anchors' scripts;
- xsd in memory (--no-persist) and xsd with its default journal, state on tmpfs
  (/dev/shm, as /var/run/xenstored is on a Xen host).

Row groups (``--rows``, comma-separated; all by default), each ``xsbench -p PID`` run in its
own process on one daemon per repetition, except the memory rows, which each get a fresh one:

  rw        read, overwrite, create, create 100 per directory; daemon CPU per request
  dir tx    DIRECTORY of 1000 children; transaction start + write + commit
  watch     watch:10 and watch:10000: registrations/s, write-to-event p50/p99, streamed
            writes/s and events/s (W watches on other paths, one matches)
  mc8       mc:8: 8 clients at once, aggregate ops/s and daemon CPU per request; the CPU
            per request of every process on the machine, and the CPUs' idle share
  rss       RSS per node, 100k nodes of 32 B (xsbench rss, fresh daemon)
  watchrss  RSS per registered watch: 10,000 watches on /w/<i> from one connection, every
            initial event read (fresh daemon; measured here, xsbench has no such test)
  dircpu    daemon CPU per DIRECTORY of 1000 children: one connection keeps 64 in flight,
            so the daemon is busy and its CPU per request is the listing's cost, not the
            round trip's (fresh daemon; measured here)

``--pin split|shared|none`` places every daemon (and everything it spawns) and its clients
alike (bench/placement.py): on CPUs of their own, on one CPU, or where the scheduler puts
them; ``--pin-mc`` does the same for mc8. Defaults in PIN_DEFAULT, chosen from the runs in
docs/benchmarks.md, "placement"; the footer states the placement and the load average.
``--spread`` adds each cell's spread across repetitions.

``--base TREE`` adds two columns, another checkout's xsd (built there: ``./dev setup`` or
``python xsd/_native/build_native.py -q``) in memory and with its journal, so a change is
measured against the version before it in the same run.

The floors answer with canned replies of the real ones' shape and size for every one-client
xsbench test (READ 31 bytes, DIRECTORY the 1000-child listing, WATCH OK plus the initial
event, an event per watched WRITE: bench/floors/), so they run every group but the memory
ones (rss, watchrss). The last column sets xsd beside each of issue 17's targets that names
the row: the ratio (or the figure) and the target, with a tick when it is met; where the
issue sets no floor target (dir, tx, watch), xsd's ratio to the uvloop floor and the better
Xen daemon's are given for information.
"""
import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.bench_requests import Oxenstored, build_xsbench   # noqa: E402
from bench.placement import CPUS, PLACEMENTS, describe, place  # noqa: E402
from tests import anchors                                    # noqa: E402
from tests.daemon_process import DaemonProcess               # noqa: E402
from tests.wire import RawClient                             # noqa: E402
from xenstore_protocol import Op                             # noqa: E402

FLOORS = os.path.join(ROOT, "bench", "floors")
DAEMONS = ["c-floor", "uvloop-floor", "cxenstored", "oxenstored", "xsd-python", "xsd-pywatch",
           "xsd-pyfires", "xsd-pypoll", "xsd", "xsd-journal"]
HEADINGS = {"c-floor": "C floor", "uvloop-floor": "uvloop floor", "cxenstored": "C xenstored",
            "oxenstored": "oxenstored (no log)",
            "xsd-python": "xsd in memory, Python requests (--python-requests)",
            "xsd-pywatch": "xsd in memory, Python watch registry (--python-watches)",
            "xsd-pyfires": "xsd in memory, a stop per watched change (--python-fires)",
            "xsd-pypoll": "xsd in memory, sockets read through Python (--python-poll)",
            "xsd": "xsd in memory", "xsd-journal": "xsd, journal on tmpfs",
            "base": "--base in memory", "base-journal": "--base, journal on tmpfs"}
# --rows group -> the xsbench tests it runs on the shared daemon (None: a fresh daemon of its own)
GROUPS = {"rw": ["rw"], "dir": ["dir"], "tx": ["tx"], "watch": ["watch:10", "watch:10000"],
          "mc8": ["mc:8"], "rss": None, "watchrss": None, "dircpu": None}
FLOOR_GROUPS = ("rw", "dir", "tx", "watch", "mc8", "dircpu")
WATCHES_FOR_RSS = 10000
DIRCPU_REQUESTS, DIRCPU_IN_FLIGHT = 40000, 64
# Where each daemon and its clients run unless --pin / --pin-mc say otherwise (bench/placement.py).
PIN_DEFAULT = {"one-client": "shared", "mc8": "none"}
# Seconds one xsbench test may take (C xenstored's mc:8 takes ~40 s here; a watch test ~5 s).
XSBENCH_TIMEOUT = {"watch": 60, "other": 180}

# Issue 17's targets, each one (kind, bound) with kind:
#   "xen"     xsd in memory / the better of C xenstored and oxenstored on this row
#   "ox"      xsd in memory / oxenstored
#   "uvloop"  xsd in memory / the uvloop floor (bound None: no target, the ratio and the
#             better Xen daemon's for information)
#   "journal" xsd with its journal on tmpfs / xsd in memory
#   "abs"     xsd in memory's figure itself
# A rate must reach its bound; a latency, a CPU time or a size must stay under it.
ONE_CLIENT_RATE = [("xen", 1.0), ("journal", 0.8), ("uvloop", None)]
FLOOR_RATE = [("xen", 1.0), ("uvloop", 0.9), ("journal", 0.8)]
LATENCY = [("xen", 1.0), ("uvloop", None)]
ROWS = [  # (metric from xsbench or watch_rss, label, format, targets)
    ("read_ops_per_s", "read ops/s, 1 client", "%.0f", FLOOR_RATE),
    ("overwrite_ops_per_s", "overwrite ops/s, 1 client", "%.0f", FLOOR_RATE),
    ("create_ops_per_s", "create ops/s, 1 client", "%.0f", FLOOR_RATE),
    ("create_spread_ops_per_s", "create, 100 per directory, ops/s", "%.0f", FLOOR_RATE),
    ("rw_daemon_cpu_us_per_op", "daemon CPU per request, 1 client (us)", "%.1f",
     [("uvloop", None)]),
    ("dir1000_ops_per_s", "DIRECTORY of 1000 children, ops/s", "%.0f", ONE_CLIENT_RATE),
    ("tx_ops_per_s", "transaction start+write+commit, /s", "%.0f", ONE_CLIENT_RATE),
    ("watch_W10_register_per_s", "W=10: watch registrations/s", "%.0f", ONE_CLIENT_RATE),
    ("watch_W10_write_to_event_p50_us", "W=10: write-to-event p50 (us)", "%.1f", LATENCY),
    ("watch_W10_write_to_event_p99_us", "W=10: write-to-event p99 (us)", "%.1f", LATENCY),
    ("watch_W10_writes_per_s", "W=10: streamed writes/s", "%.0f", ONE_CLIENT_RATE),
    ("watch_W10_events_per_s", "W=10: events/s", "%.0f", ONE_CLIENT_RATE),
    ("watch_W10000_register_per_s", "W=10000: watch registrations/s", "%.0f", ONE_CLIENT_RATE),
    ("watch_W10000_write_to_event_p50_us", "W=10000: write-to-event p50 (us)", "%.1f",
     LATENCY + [("ox", 0.5)]),
    ("watch_W10000_write_to_event_p99_us", "W=10000: write-to-event p99 (us)", "%.1f", LATENCY),
    ("watch_W10000_writes_per_s", "W=10000: streamed writes/s", "%.0f", ONE_CLIENT_RATE),
    ("watch_W10000_events_per_s", "W=10000: events/s", "%.0f", ONE_CLIENT_RATE),
    ("mc8_aggregate_ops_per_s", "8 clients at once: aggregate ops/s", "%.0f",
     [("xen", 2.0), ("journal", 0.8)]),
    ("mc8_daemon_cpu_us_per_op", "8 clients: daemon CPU per request (us)", "%.1f", [("xen", 0.5)]),
    ("mc8_machine_cpu_us_per_op", "8 clients: every process's CPU per request, the clients' "
     "and the kernel's too (us)", "%.1f", [("cfloor", None)]),
    ("mc8_idle_percent", "8 clients: CPUs idle during the run (%)", "%.0f", []),
    ("dir1000_daemon_cpu_us_per_op", "DIRECTORY of 1000 children, 64 in flight: daemon CPU "
     "per request (us)", "%.2f", [("uvloop", None)]),
    ("rss_bytes_per_node", "RSS per node, 100k nodes of 32 B (fresh daemon)", "%.0f",
     [("abs", 115)]),
    ("watch_rss_bytes_per_watch", "RSS per registered watch, 10,000 watches (fresh daemon)",
     "%.0f", [("abs", 200)]),
]
TARGET_NAMES = {"xen": "better Xen", "ox": "oxenstored", "uvloop": "uvloop floor",
                "cfloor": "C floor", "journal": "journal / in memory"}


class Floor:
    """One of the two canned-reply responders, on ``rundir/socket``."""

    def __init__(self, argv, rundir: str):
        os.makedirs(rundir, exist_ok=True)
        self.socket_path = os.path.join(rundir, "socket")
        self.proc = subprocess.Popen(argv + [self.socket_path])
        self.pid = self.proc.pid
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(self.socket_path)
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{argv} did not start")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)


# Every xsd column runs on the C store: under XSD_NATIVE=auto a build older than its
# sources falls back to the Python store without a word, and the column would measure that.
ON_C_STORE = {"XSD_NATIVE": "c"}


class BaseDaemon(DaemonProcess):
    """xsd from another checkout (``--base``): run from there, importing its own modules."""

    def __init__(self, tree: str, rundir: str, args):
        super().__init__(rundir, args, env=dict(os.environ, PYTHONPATH=tree, **ON_C_STORE))
        self.tree = tree

    def _spawn(self) -> subprocess.Popen:
        os.makedirs(self.rundir, exist_ok=True)
        with open(self.log_path, "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "xsd", "--rundir", self.rundir, *self.args],
                cwd=self.tree, env=self.env, stdout=log, stderr=subprocess.STDOUT)


class Xsd:
    base_tree = None                # --base

    def __init__(self, rundir: str, args, base: bool = False):
        args = ["--no-domain-init", *args]
        self.daemon = (BaseDaemon(self.base_tree, rundir, args) if base
                       else DaemonProcess(rundir, args, env=dict(os.environ, **ON_C_STORE))).start()
        self.socket_path = self.daemon.socket_path
        self.pid = self.daemon.proc.pid

    def stop(self):
        self.daemon.stop()


def start(name: str, rundir: str, work: str):
    if name == "c-floor":
        return Floor([os.path.join(work, "floor_c")], rundir)
    if name == "uvloop-floor":
        return Floor([sys.executable, os.path.join(FLOORS, "floor_uvloop.py")], rundir)
    if name == "cxenstored":
        return anchors.ReferenceDaemon(rundir)
    if name == "oxenstored":
        return Oxenstored(rundir)
    if name == "xsd":
        return Xsd(rundir, ["--no-persist"])
    if name == "xsd-python":      # the request path the C one replaced, on the same C store
        return Xsd(rundir, ["--no-persist", "--python-requests"])
    if name == "xsd-pywatch":     # the watch registry the C one replaced, on the same C store
        return Xsd(rundir, ["--no-persist", "--python-watches"])
    if name == "base":
        return Xsd(rundir, ["--no-persist"], base=True)
    if name == "xsd-pyfires":     # the engine stopping for Python to fire each watched change
        return Xsd(rundir, ["--no-persist", "--python-fires"])
    if name == "xsd-pypoll":      # each socket's batch through uvloop's protocol and Python
        return Xsd(rundir, ["--no-persist", "--python-poll"])
    # The default journal, with its state directory on tmpfs like /var/run/xenstored.
    state = tempfile.mkdtemp(prefix="xsd-state-", dir="/dev/shm")
    daemon = Xsd(rundir, ["--state-dir", state], base=name == "base-journal")
    daemon.state_dir = state
    return daemon


def stop(daemon) -> None:
    daemon.stop()
    state = getattr(daemon, "state_dir", None)
    if state:
        shutil.rmtree(state, ignore_errors=True)


def machine_ticks(cpus) -> tuple:
    """(busy, idle) clock ticks of ``cpus`` so far (/proc/stat's cpuN lines; idle counts
    iowait, busy everything else but guest time, which user time already holds)."""
    busy = idle = 0
    with open("/proc/stat", encoding="ascii") as f:
        for line in f:
            name, *ticks = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                ticks = [int(t) for t in ticks[:8]]
                idle += ticks[3] + ticks[4]
                busy += sum(ticks) - ticks[3] - ticks[4]
    return busy, idle


def machine_share(test: str, figures: dict, before: tuple, after: tuple, cpus, nkeys: int) -> dict:
    """mc:N's whole-machine figures: every process's CPU per request (the clients', the
    daemon's, the kernel's on their behalf, and whatever else runs here) and the share of
    the CPUs left idle over the run's wall time (xsbench's aggregate rate gives it).  The
    ticks span the whole xsbench process, so they also hold its set-up and the clients' RM
    at the end (small beside 3 × n × N requests); the idle share is over the run alone."""
    clients = test.split(":")[1]
    rate = figures.get(f"mc{clients}_aggregate_ops_per_s")
    if not rate:
        return {}
    ops = 3 * nkeys * int(clients)          # xsbench mc:N: N clients create, overwrite, read n keys
    seconds = (after[0] - before[0]) / os.sysconf("SC_CLK_TCK")
    wall = ops / rate * len(cpus)
    return {f"mc{clients}_machine_cpu_us_per_op": seconds / ops * 1e6,
            f"mc{clients}_idle_percent": max(0.0, 1 - seconds / wall) * 100}


def xsbench(exe: str, daemon, test: str, nkeys: int) -> dict:
    """One xsbench process per test, so a test that fails or hangs costs only its own figures;
    what it printed before is kept (xsbench prints each figure as soon as it has it).

    A hang is not hypothetical: in watch:W's streaming phase, C xenstored coalesces identical
    pending events ("dropping duplicate watch") when the draining thread falls behind on a
    loaded machine, and xsbench then waits for 3000 events that never come."""
    env = dict(os.environ, XENSTORED_PATH=daemon.socket_path)
    before = machine_ticks(CPUS)
    try:
        out = subprocess.run([exe, "-n", str(nkeys), "-p", str(daemon.pid), test], env=env,
                             check=True, capture_output=True, text=True,
                             timeout=XSBENCH_TIMEOUT["watch" if test.startswith("watch:") else "other"]).stdout
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        print(f"  xsbench {test} failed: {err}", file=sys.stderr)
        out = err.stdout or ""
        if isinstance(out, bytes):
            out = out.decode(errors="replace")
    figures = {k: float(v) for k, v in (line.split() for line in out.splitlines()
                                        if len(line.split()) == 2)}
    if test.startswith("mc:"):
        figures.update(machine_share(test, figures, before, machine_ticks(CPUS), CPUS, nkeys))
    return figures


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def watch_rss(daemon, watches: int = WATCHES_FOR_RSS) -> dict:
    """RSS per registered watch: one connection registers ``watches`` watches on /w/<i>
    (xsbench watch:W's paths and tokens), reading every reply and initial event, so nothing
    waits in the daemon's output; RSS is taken with the connection open, before and after."""
    client = RawClient(daemon.socket_path, timeout=60)
    try:
        before = rss_kib(daemon.pid)
        events = 0
        for first in range(0, watches, 256):      # 256 in flight: a few socket buffers' worth
            sent = [client.send_packet(Op.WATCH, b"/w/%d\0t%d\0" % (i, i))
                    for i in range(first, min(first + 256, watches))]
            for req in sent:
                reply = client.reply(req)
                if reply.op != Op.WATCH:
                    raise RuntimeError(f"WATCH refused: {reply.payload!r}")
            events += len(client.events)
            client.events.clear()
            client.received.clear()
        events += len(client.wait_events(watches - events, timeout=60))
        if events != watches:
            raise RuntimeError(f"{events} initial events for {watches} watches")
        after = rss_kib(daemon.pid)
    finally:
        client.close()
    return {"watch_rss_bytes_per_watch": (after - before) * 1024 / watches}


def cpu_seconds(pid: int) -> float:
    """The process's user + system time (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def dir_cpu(daemon) -> dict:
    """Daemon CPU per DIRECTORY of /bench/dir's 1000 children (xsbench dir's node), with
    DIRCPU_IN_FLIGHT requests in flight: the daemon never waits for the client."""
    client = RawClient(daemon.socket_path, timeout=60)
    try:
        for first in range(0, 1000, 100):
            sent = [client.send_packet(Op.WRITE, b"/bench/dir/%d\0" % i)
                    for i in range(first, first + 100)]
            for req in sent:
                client.reply(req)
        window = []
        before = cpu_seconds(daemon.pid)
        for _ in range(DIRCPU_REQUESTS):
            window.append(client.send_packet(Op.DIRECTORY, b"/bench/dir\0"))
            if len(window) == DIRCPU_IN_FLIGHT:
                for req in window:
                    reply = client.reply(req)
                    if reply.op != Op.DIRECTORY or reply.payload.count(b"\0") != 1000:
                        raise RuntimeError(f"DIRECTORY failed: {reply.payload[:80]!r}")
                window.clear()
        for req in window:
            client.reply(req)
        spent = cpu_seconds(daemon.pid) - before
    finally:
        client.close()
    return {"dir1000_daemon_cpu_us_per_op": spent / DIRCPU_REQUESTS * 1e6}


def measure(name: str, groups, exe: str, nkeys: int, rundir: str, work: str, pins: dict) -> dict:
    """Every chosen group's figures for one daemon, one repetition; each test run with the
    daemon and its clients placed as ``pins`` says for its group."""
    if name.endswith("floor"):
        groups = [g for g in groups if g in FLOOR_GROUPS]
    results = {}
    shared = [(g, test) for g in groups if GROUPS[g] for test in GROUPS[g]]
    if shared:
        daemon = start(name, rundir + "-shared", work)
        try:
            for group, test in shared:
                place(daemon.pid, pins[group])
                results.update(xsbench(exe, daemon, test, nkeys))
        finally:
            stop(daemon)
    for group in groups:                          # memory: on a fresh daemon of its own
        if GROUPS[group] is not None:
            continue
        daemon = start(name, rundir + "-" + group, work)
        try:
            place(daemon.pid, pins[group])
            if group == "rss":
                results.update(xsbench(exe, daemon, "rss", nkeys))
            elif group == "dircpu":
                results.update(dir_cpu(daemon))
            else:
                results.update(watch_rss(daemon))
        except (OSError, RuntimeError) as err:
            print(f"  {group} on {name} failed: {err}", file=sys.stderr)
        finally:
            stop(daemon)
    return results


def spread(values) -> str:
    """(max - min) / median of one cell's repetitions, in percent."""
    mid = statistics.median(values)
    return f"{(max(values) - min(values)) / mid * 100:.0f}%" if mid else ""


def lower_is_better(metric: str) -> bool:
    return not metric.endswith("_per_s")


def against_targets(metric: str, targets, med: dict) -> str:
    """The row's targets as 'ratio× what (≥ bound ✓)', for xsd in memory unless said."""
    def get(daemon):
        return med.get(daemon, {}).get(metric)
    xsd, lower = get("xsd"), lower_is_better(metric)
    xen = [v for v in (get("cxenstored"), get("oxenstored")) if v is not None]
    better_xen = (min(xen) if lower else max(xen)) if xen else None
    parts = []
    for kind, bound in targets:
        if kind == "abs":
            value, base = xsd, 1.0
        elif kind == "journal":
            value, base = get("xsd-journal"), xsd
        elif kind == "xen":
            value, base = xsd, better_xen
        else:
            value, base = xsd, get({"ox": "oxenstored", "uvloop": "uvloop-floor",
                                    "cfloor": "c-floor"}[kind])
        if value is None or not base:
            continue
        ratio = value / base
        if bound is None:
            xen_part = f", better Xen {better_xen / base:.2f}×" if better_xen else ""
            parts.append(f"{ratio:.2f}× {TARGET_NAMES[kind]} (no target{xen_part})")
            continue
        met = ratio <= bound if lower else ratio >= bound
        mark = "✓" if met else "✗"
        sign = "≤" if lower else "≥"
        if kind == "abs":
            parts.append(f"{ratio:.0f} B ({sign} {bound:g} {mark})")
        else:
            parts.append(f"{ratio:.2f}× {TARGET_NAMES[kind]} ({sign} {bound:g} {mark})")
    return "; ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("-n", "--keys", type=int, default=10000)
    parser.add_argument("--daemons", default=",".join(DAEMONS),
                        help="comma-separated subset of " + ",".join(DAEMONS))
    parser.add_argument("--rows", default=",".join(GROUPS),
                        help="comma-separated subset of " + ",".join(GROUPS))
    parser.add_argument("--base", metavar="TREE",
                        help="also run the xsd of this checkout, in memory and journaling")
    parser.add_argument("--pin", choices=PLACEMENTS, default=PIN_DEFAULT["one-client"],
                        help="where every daemon and its one client run, for every group "
                        "but mc8: " + "; ".join(f"{k}: {v}" for k, v in PLACEMENTS.items())
                        + " (default %(default)s)")
    parser.add_argument("--pin-mc", choices=PLACEMENTS, default=PIN_DEFAULT["mc8"],
                        help="the same for mc8's eight clients (default %(default)s)")
    parser.add_argument("--spread", action="store_true",
                        help="also print each cell's spread across repetitions, "
                        "(max - min) / median")
    args = parser.parse_args()
    if args.base:
        Xsd.base_tree = os.path.abspath(args.base)
        listed = args.daemons.split(",")
        args.daemons = ",".join(listed + [d for d in ("base", "base-journal") if d not in listed])
    why = anchors.available()
    if why:
        sys.exit(f"cannot run: {why}")
    daemons, groups = args.daemons.split(","), args.rows.split(",")
    for chosen, known in ((daemons, DAEMONS + ["base", "base-journal"] * bool(args.base)),
                          (groups, GROUPS)):
        unknown = set(chosen) - set(known)
        if unknown:
            parser.error(f"unknown {', '.join(sorted(unknown))}; expected some of {', '.join(known)}")
    try:
        pins = {g: args.pin_mc if g == "mc8" else args.pin for g in groups}
        placed = {g: describe(p) for g, p in pins.items()}
    except ValueError as err:
        parser.error(str(err))
    results = {d: {} for d in daemons}
    started, load_before = time.monotonic(), os.getloadavg()
    with tempfile.TemporaryDirectory() as work:
        exe = build_xsbench(work)
        subprocess.run(["gcc", "-O2", "-Wall", "-o", os.path.join(work, "floor_c"),
                        os.path.join(FLOORS, "floor_c.c")], check=True)
        for rep in range(args.reps):
            for name in daemons:
                figures = measure(name, groups, exe, args.keys, os.path.join(work, f"{name}-{rep}"),
                                  work, pins)
                for metric, value in figures.items():
                    results[name].setdefault(metric, []).append(value)
                print(f"rep {rep + 1}/{args.reps} {name} done ({time.monotonic() - started:.0f} s)",
                      file=sys.stderr)
    load_after = os.getloadavg()
    med = {d: {m: statistics.median(v) for m, v in r.items()} for d, r in results.items()}
    print("| metric | " + " | ".join(HEADINGS[d] for d in daemons) + " | xsd against issue 17's targets |")
    print("|---|" + "---:|" * len(daemons) + "---|")
    for metric, label, fmt, targets in ROWS:
        if not any(metric in med[d] for d in daemons):
            continue
        cells = [(fmt % med[d][metric]) if metric in med[d] else "" for d in daemons]
        print(f"| {label} | " + " | ".join(cells) + f" | {against_targets(metric, targets, med)} |")
    if args.spread:
        print("\nSpread across repetitions, (max - min) / median:\n")
        print("| metric | " + " | ".join(HEADINGS[d] for d in daemons) + " |")
        print("|---|" + "---:|" * len(daemons))
        for metric, label, _, _ in ROWS:
            if any(metric in results[d] for d in daemons):
                cells = [spread(results[d][metric]) if metric in results[d] else "" for d in daemons]
                print(f"| {label} | " + " | ".join(cells) + " |")
    tests = " ".join(t for g in groups if GROUPS[g] for t in GROUPS[g])
    print(f"\nxsbench -n {args.keys} -p PID, one process per test, on one daemon: {tests}; "
          f"on fresh daemons: {', '.join(g for g in groups if GROUPS[g] is None) or 'nothing'}. "
          f"Medians of {args.reps} interleaved runs; CPU per request is the daemon's user + "
          "system time (/proc/PID/stat); 'better Xen' is the better of C xenstored and "
          f"oxenstored on that row. mc:8's machine rows count CPUs {','.join(map(str, CPUS))} "
          "(/proc/stat), other work on the machine included.")
    by_placement = {}
    for group, where in placed.items():
        by_placement.setdefault(where, []).append(group)
    print("Placement: " + "; ".join(f"{', '.join(g)}: {where}" for where, g in by_placement.items())
          + ". Load average (1, 5, 15 min) " + " at the start, ".join(
              " ".join(f"{x:.2f}" for x in load) for load in (load_before, load_after))
          + " at the end.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
