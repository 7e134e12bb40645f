#!/usr/bin/env python3
"""Where one READ and one WRITE spend the daemon's microseconds (xsd, in memory), on the
Python request path (``--python-requests``) and on the C one, side by side.

    python bench/profile_requests.py            # 20,000 requests per load
    python bench/profile_requests.py -n 5000
    python bench/profile_requests.py --loads guest-create   # one load only
    python bench/profile_requests.py --loads guest-create,guest-tx

One sequential client (tests/wire.py's RawClient) sends N READs, or N
overwrites of 32 bytes, to keys it created first, on a fresh daemon each time.
The ``guest-create`` load is a guest instead (domain 1 of the mock hypervisor, on
its ring, introduced by a dom0 toolstack): N WRITEs of 32 bytes each creating a
node in its home's ``data`` dir after N such creations to warm up, under
nodes and memory quotas that all of them fit (so every one is checked against
them); it has no floor (the uvloop floor serves sockets only), so the table
shows its whole cost split by stage.  The ``guest-tx`` load is the same guest
making as many creations inside transactions, TX_WRITES of them in each
(TRANSACTION_START, the WRITEs with its id, TRANSACTION_END committing), 64
to a directory (``data/g<i/64>/k<i>``: a transaction copies each node it reads,
children names included, so one directory of 40,000 would measure that copy):
CPU per request counts all three kinds of request.

1. the uvloop floor (bench/floors/floor_uvloop.py: same loop, canned reply,
   one write per batch): its CPU per request is what the event loop and the
   kernel cost any uvloop daemon with this client;
2. ``xsd --no-persist --no-domain-init``: its CPU per request (user + system,
   /proc/PID/stat), nothing attached;
3. the same xsd under cProfile with a CPU clock (time.thread_time: waiting in
   epoll costs nothing), switched on by SIGRTMIN right before the N requests
   and off (and dumped) by SIGRTMIN+1 right after.

xsd's cost above the floor (2 minus 1) is split over stages (STAGES: by the
module and function of our code) in proportion to their profiled CPU; a
builtin's time (dict.get, struct.pack, bytes.split...) goes to the stage of
the function that called it, except uvloop's transport write, which the floor
does as well and is counted there.  cProfile's overhead falls on every Python call,
so the split is approximate; the totals and the floor are measured without it.
"""
import argparse
import os
import pstats
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.wire import RawClient                       # noqa: E402
from xenstore_protocol import Op                        # noqa: E402
from xsd.hv_cli import toolstack_introduce              # noqa: E402
from xsd.hypervisor.guest_client import GuestClient, SocketClient   # noqa: E402
from xsd.hypervisor.mock import MockControl             # noqa: E402

VALUE = b"0123456789abcdef0123456789abcdef"
TX_WRITES = 4                   # guest-tx: creations per transaction
GUEST_LOADS = ("guest-create", "guest-tx")
FLOOR = os.path.join(ROOT, "bench", "floors", "floor_uvloop.py")

# (stage, test on (file, function) of a frame of ours); the first that matches wins.
STAGES = [
    ("C request path (fastpath.py, engine.py, the C call)",
     lambda f, fn: f.endswith(("xsd/core/fastpath.py", "xsd/_native/engine.py"))),
    ("request pump (serve_bytes, flush scheduling)", lambda f, fn: f.endswith("xsd/transport/pump.py")),
    ("C store through Python (cstore.py, store.py wrapper)",
     lambda f, fn: f.endswith(("xsd/core/cstore.py", "xsd/_native/store.py"))),
    ("decode (framing, Packet)", lambda f, fn: f.endswith("xenstore_protocol/decoder.py")),
    ("encode reply (Packet.encode)", lambda f, fn: f.endswith("xenstore_protocol/packet.py")
     and fn == "encode"),
    ("payload fields, path checks", lambda f, fn: f.endswith(("xenstore_protocol/paths.py",
                                                             "xenstore_protocol/packet.py"))),
    ("permission and quota checks", lambda f, fn: f.endswith(("xsd/core/permissions.py", "xsd/core/quota.py",
                                                             "xenstore_protocol/perms.py"))),
    ("store (xsd/core/store.py)", lambda f, fn: f.endswith("xsd/core/store.py")),
    ("op handler (xsd/core/ops.py)", lambda f, fn: f.endswith("xsd/core/ops.py")),
    ("watches and events", lambda f, fn: f.endswith(("xsd/core/watches.py", "xsd/_native/trie.py"))
     or "fire" in fn),
    ("dispatch (table, errors, reply packet)", lambda f, fn: f.endswith("xsd/core/dispatch.py")),
    ("session (reply queue, flush)", lambda f, fn: f.endswith("xsd/core/session.py")),
    ("guests' acknowledgement hook at each flush", lambda f, fn: f.endswith("xsd/transport/guest.py")),
    ("daemon (handle, flush)", lambda f, fn: f.endswith("xsd/core/daemon.py")),
    ("connection (data_received)", lambda f, fn: f.endswith("xsd/transport/connection.py")),
]
OTHER = "other code of ours"
OURS = ("xsd/", "xenstore_protocol/")

# Runs xsd with a CPU-time profiler that two signals switch on and off (dump).
PROFILED_XSD = """
import cProfile, runpy, signal, sys, time
out = sys.argv.pop(1)
prof = cProfile.Profile(time.thread_time)
signal.signal(signal.SIGRTMIN, lambda *a: prof.enable())
def stop(*a):
    prof.disable()
    prof.dump_stats(out)
signal.signal(signal.SIGRTMIN + 1, stop)
runpy.run_module("xsd", run_name="__main__", alter_sys=True)
"""


def stage_of(func):
    """The stage of a profiled function of ours, else None."""
    filename, _, name = func
    rel = os.path.relpath(filename, ROOT) if os.path.isabs(filename) else filename
    if not rel.startswith(OURS):
        return None
    for stage, test in STAGES:
        if test(rel, name):
            return stage
    return OTHER


def split_by_stage(stats: dict) -> dict:
    """Own CPU seconds per stage; builtins and library code go to their callers' stages."""
    by_stage = {}
    for func, (_, _, own, _, callers) in stats.items():
        stage = stage_of(func)
        if stage is not None:
            by_stage[stage] = by_stage.get(stage, 0.0) + own
            continue
        if "uvloop" in func[2]:              # the transport's write: the floor does it too
            continue
        for caller, caller_row in callers.items():
            caller_stage = stage_of(caller)
            if caller_stage is not None:     # time of this function when called from there
                by_stage[caller_stage] = by_stage.get(caller_stage, 0.0) + caller_row[2]
    return by_stage


def cpu_us(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1e6 / os.sysconf("SC_CLK_TCK")


def start(argv, rundir: str, cwd: str = ROOT) -> subprocess.Popen:
    """``argv`` run in the checkout ``cwd`` (its own modules first), once its socket in
    ``rundir`` answers."""
    os.makedirs(rundir, exist_ok=True)
    proc = subprocess.Popen(argv, cwd=cwd, env=dict(os.environ, PYTHONPATH=cwd),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = os.path.join(rundir, "socket")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{argv} did not start")


def xsd_argv(rundir: str, profile_out=None, extra=()) -> list:
    prefix = [sys.executable] + (["-c", PROFILED_XSD, profile_out] if profile_out else ["-m", "xsd"])
    return prefix + ["--rundir", rundir, "--no-persist", "--no-domain-init", "--log-level",
                     "WARNING", *extra]


def load(client, kind: str, n: int, start: int = 0) -> int:
    """The load's ``n`` requests (guest-tx: ``n`` creations, in transactions) from key
    ``start`` on; -> how many requests that was."""
    if kind == "guest-tx":
        sent = 0
        for first in range(start, start + n, TX_WRITES):
            tx_id = int(client.ok(Op.TRANSACTION_START, b"")[:-1])
            for i in range(first, min(first + TX_WRITES, start + n)):
                client.ok(Op.WRITE, payload=b"data/g%d/k%d\0" % (i // 64, i) + VALUE,
                          tx_id=tx_id)
                sent += 1
            client.ok(Op.TRANSACTION_END, b"T", tx_id=tx_id)
            sent += 2
        return sent
    for i in range(start, start + n):
        if kind == "guest-create":              # relative: under the guest's home
            client.ok(Op.WRITE, payload=b"data/k%d\0" % i + VALUE)
            continue
        path = b"/bench/k%d" % i
        if kind == "read":
            client.ok(Op.READ, path)
        else:                                   # create, or overwrite once they exist
            client.ok(Op.WRITE, payload=path + b"\0" + VALUE)
    return n


def guest_quotas(n: int) -> tuple:
    """xsd options for the guest loads: quotas every creation fits, checked each time."""
    return ("--quota-nodes", str(3 * n + 100), "--quota-memory", str(1 << 30),
            "-q", "memory=%d" % (1 << 29))


def client_for(rundir: str, kind: str):
    """The load's client: dom0 on the socket, or (guest-create) domain 1 on its ring,
    introduced first, with the ``n`` warm-up creations still to do."""
    if kind not in GUEST_LOADS:
        return RawClient(os.path.join(rundir, "socket"))
    row = MockControl(rundir).create(name="bench", domid=1,
                                     uuid="00000000-0000-0000-0000-000000000001")
    with SocketClient(os.path.join(rundir, "socket"), timeout=10) as toolstack:
        toolstack_introduce(toolstack, row)
    return GuestClient(rundir, 1, timeout=30)


def warm_up(client, kind: str, n: int) -> int:
    """The keys the load needs (or, creating, as many others first); -> where it starts."""
    if kind in GUEST_LOADS:
        load(client, kind, n, start=n)
        return 0
    load(client, "create", n)
    return 0


def cpu_per_request(argv, rundir: str, kind: str, n: int) -> float:
    proc = start(argv, rundir)
    try:
        with client_for(rundir, kind) as client:
            at = warm_up(client, kind, n)
            before = cpu_us(proc.pid)
            requests = load(client, kind, n, at)
            after = cpu_us(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    return (after - before) / requests


def profile(work: str, kind: str, n: int, extra=(), tag: str = "") -> dict:
    rundir = os.path.join(work, "profiled-" + kind + tag)      # short: a socket path's limit
    out = os.path.join(work, kind + tag + ".prof")
    proc = start(xsd_argv(rundir, out, extra), rundir)
    try:
        with client_for(rundir, kind) as client:
            at = warm_up(client, kind, n)
            os.kill(proc.pid, signal.SIGRTMIN)
            requests = load(client, kind, 1, at)    # the signal has been handled by now
            requests += load(client, kind, n - 1, at + 1)
            os.kill(proc.pid, signal.SIGRTMIN + 1)
            deadline = time.monotonic() + 20
            while not os.path.exists(out) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)                     # dump_stats finishes writing
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    return split_by_stage(pstats.Stats(out).stats), requests


LOADS = {"read": "READ", "overwrite": "WRITE (overwrite, 32 B)",
         "guest-create": "guest WRITE creating a node (32 B, ring)",
         "guest-tx": "guest creations in transactions (%d a transaction, ring)" % TX_WRITES}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=20000)
    parser.add_argument("--loads", default=",".join(LOADS),
                        help="comma-separated subset of " + ",".join(LOADS))
    args = parser.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as work:
        for kind in args.loads.split(","):
            label = LOADS[kind]
            floor = 0.0                         # a guest's ring: no floor (see above)
            if kind not in GUEST_LOADS:
                floor_dir = os.path.join(work, "floor-" + kind)
                floor = cpu_per_request([sys.executable, FLOOR, os.path.join(floor_dir, "socket")],
                                        floor_dir, kind, args.n)
            # The request path in Python (the design the C one replaced) and the C path,
            # measured in the same minutes.
            for path_label, extra, tag in ((", Python path", ("--python-requests",), "-py"),
                                           (", C path", (), "-c")):
                if kind in GUEST_LOADS:
                    extra += guest_quotas(args.n)
                xsd_dir = os.path.join(work, "xsd-" + kind + tag)
                total = cpu_per_request(xsd_argv(xsd_dir, extra=extra), xsd_dir, kind, args.n)
                stages, requests = profile(work, kind, args.n, extra, tag)
                profiled = sum(stages.values())
                above = max(total - floor, 0.0)
                row = rows[label + path_label] = {stage: above * t / profiled
                                                  for stage, t in stages.items()}
                row["uvloop floor: event loop, socket read/write, kernel"] = floor
                row["total daemon CPU per request"] = total
                row["_profiled"] = profiled * 1e6 / requests
    names = [s for s, _ in STAGES] + [OTHER, "uvloop floor: event loop, socket read/write, kernel",
                                      "total daemon CPU per request"]
    labels = list(rows)
    print("| where (us of daemon CPU per request) | " + " | ".join(labels) + " |")
    print("|---|" + "---:|" * len(labels))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{rows[label].get(name, 0.0):.1f}" for label in labels) + " |")
    print(f"\n{args.n} requests per load, one sequential client; xsd's cost above the floor split by "
          "cProfile (CPU clock) shares; under the profiler our code took "
          + ", ".join(f"{label} {rows[label]['_profiled']:.1f} us" for label in labels) + " per request")
    for kind in args.loads.split(","):
        python, c = (rows[LOADS[kind] + path]["total daemon CPU per request"]
                     for path in (", Python path", ", C path"))
        print(f"{LOADS[kind]}: C path / Python path daemon CPU per request "
              f"{c:.1f} / {python:.1f} us = {c / python:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
