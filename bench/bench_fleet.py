"""Fleet benchmark: 200 hosts' VM state changes through xsd-fleet and NATS, against oVirt's polling.

    .venv/bin/python bench/bench_fleet.py                       # 200 hosts x 25 VMs, 60 s
    .venv/bin/python bench/bench_fleet.py --hosts 20 --duration 20

The load is oVirt's fleet as its engine sees it: 200 hypervisors with 25 VMs
each, which the engine polls with about 800 getAllVMStats and 3,200 getVMList
requests a minute (4,000 requests/min) and still learns of a change up to
15 s late.  Here each VM changes state on average once every ``--period``
seconds (60 by default: 5,000 changes/min for the fleet, Poisson arrivals),
and everything runs on this machine:

- one nats-server (JetStream on, store in a temporary directory, 127.0.0.1);
- ``--daemons`` real xsd daemons (2 by default), the hosts spread over them;
  host i's tree lives under ``/fleet/host-i`` of its daemon, and its bridge
  mirrors ``/fleet/host-i/vm/*/state`` (a real host would mirror
  ``/vm/*/state`` of its own daemon: same work per host, fewer processes);
- every host's bridge (``xsd_fleet.Bridge``: its own xenstore and NATS
  connections, its own mirror, a heartbeat every ``--heartbeat`` s) runs in
  ONE separate process, so that process's CPU time and memory, divided by
  the number of hosts, is the bridge's cost per host;
- the writer (paced writes, the write time in the value) and the consumer
  (one ``FleetMirror`` over all hosts, the callback takes the latency) run in
  this process.

Printed side by side: messages per minute on the bus (changes and
heartbeats, as the consumer received them) against oVirt's 4,000 polling
requests per minute; write -> consumer callback latency p50/p99 against
oVirt's up-to-15 s; the bridges' CPU (% of one core) and RSS per host.
The machine's 2 cores are shared by daemons, broker, bridges, writer and
consumer, so the latency includes their contention.
"""
import argparse
import asyncio
import json
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.daemon_process import DaemonProcess  # noqa: E402
from tests.nats_process import NatsServer  # noqa: E402

OVIRT_REQUESTS_PER_MIN = 800 + 3200         # getAllVMStats + getVMList, 200 hosts
OVIRT_STALENESS_S = 15.0
STATES = [b"running", b"paused", b"migrating", b"running", b"shutdown"]


def host_name(i):
    return f"host-{i}"


def vm_state_path(i, vm):
    return f"/fleet/{host_name(i)}/vm/{vm:02d}/state"


# -- the bridges' process -------------------------------------------------------------------------

def rss_kib(pid="self"):
    with open(f"/proc/{pid}/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def cpu_seconds():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def run_bridges(args):
    from xsd_fleet import Bridge
    sockets = args.sockets.split(",")
    before = rss_kib()
    bridges = []
    for i in range(args.hosts):
        bridges.append(Bridge(host_name(i), servers=[args.nats], xenstored_path=sockets[i % len(sockets)],
                              patterns=[f"/fleet/{host_name(i)}/vm/*/state"], domains=False,
                              heartbeat=args.heartbeat))
    for start in range(0, len(bridges), 20):                      # 20 at a time
        await asyncio.gather(*(b.start() for b in bridges[start:start + 20]))
    await asyncio.gather(*(b.sync(120) for b in bridges))
    ready_cpu, ready_time = cpu_seconds(), time.monotonic()
    print(json.dumps({"ready": True}), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    elapsed, cpu = time.monotonic() - ready_time, cpu_seconds() - ready_cpu
    totals = {}
    for b in bridges:
        for k, v in b.counters.items():
            totals[k] = totals.get(k, 0) + v
    rss = rss_kib()
    for b in bridges:
        await b.close()
    print(json.dumps({"cpu_s": cpu, "elapsed_s": elapsed, "rss_kib": rss, "rss_before_kib": before,
                      "counters": totals}), flush=True)


# -- the orchestrator: broker, daemons, writer, consumer -------------------------------------------

def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def writer(sockets, args, stop, written):
    """Poisson arrivals of VM state changes over the whole fleet; the value carries the
    write time (time.time_ns(), one clock for this whole machine)."""
    from watchlib import Client
    clients = [Client(s, timeout=10) for s in sockets]
    rng = random.Random(7)
    rate = args.hosts * args.vms / args.period            # changes per second, fleet-wide
    next_at = time.monotonic()
    try:
        while not stop.is_set():
            next_at += rng.expovariate(rate)
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            i, vm = rng.randrange(args.hosts), rng.randrange(args.vms)
            state = rng.choice(STATES)
            clients[i % len(clients)].write(vm_state_path(i, vm), state + b":%d" % time.time_ns())
            written[0] += 1
    finally:
        for c in clients:
            c.close()


async def orchestrate(args):
    from watchlib import Client
    from watchlib.fleet import FleetMirror
    tmp = tempfile.mkdtemp(prefix="bench-fleet-")
    nats_server = NatsServer(os.path.join(tmp, "nats")).start()
    daemons = [DaemonProcess(os.path.join(tmp, f"xsd{d}"), ["--no-persist"]).start()
               for d in range(args.daemons)]
    sockets = [d.socket_path for d in daemons]
    bridges = None
    try:
        for i in range(args.hosts):                                  # the fleet's VMs, as booted
            with Client(sockets[i % len(sockets)], timeout=10) as c:
                for vm in range(args.vms):
                    c.write(vm_state_path(i, vm), b"running:0")
        bridges = subprocess.Popen(
            [sys.executable, __file__, "--role", "bridges", "--nats", nats_server.url,
             "--sockets", ",".join(sockets), "--hosts", str(args.hosts),
             "--heartbeat", str(args.heartbeat)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True)
        line = await asyncio.to_thread(bridges.stdout.readline)
        if not line or not json.loads(line).get("ready"):
            raise RuntimeError("the bridges did not start")

        latencies, counts = [], {"changes": 0, "heartbeats": 0}

        def on_change(host, change):
            counts["changes"] += 1
            stamp = int(change.value.rsplit(b":", 1)[1]) if hasattr(change, "value") else 0
            if stamp:
                latencies.append((time.time_ns() - stamp) / 1e6)

        fm = await FleetMirror.start([nats_server.url], "host-*", "/fleet/*/vm/*/state", on_change)
        await fm.sync(120)
        initial = len(fm.values)
        counts["changes"] = 0
        messages0, beats0 = fm.messages, fm.heartbeat_messages
        latencies.clear()
        stop, written = threading.Event(), [0]
        t = threading.Thread(target=writer, args=(sockets, args, stop, written))
        t0 = time.monotonic()
        t.start()
        await asyncio.sleep(args.duration)
        stop.set()
        await asyncio.to_thread(t.join)
        await asyncio.sleep(2.0)                                     # let the tail arrive
        elapsed = time.monotonic() - t0
        counts["messages"] = fm.messages - messages0
        counts["heartbeats"] = fm.heartbeat_messages - beats0
        await fm.close()
        bridges.send_signal(signal.SIGTERM)
        out, _ = await asyncio.to_thread(bridges.communicate, timeout=120)
        stats = json.loads(out.strip().splitlines()[-1])
    finally:
        if bridges is not None and bridges.poll() is None:
            bridges.kill()
        for d in daemons:
            d.stop()
        nats_server.stop()

    minutes = elapsed / 60
    per_min_changes = counts["messages"] / minutes
    per_min_hb = counts["heartbeats"] / minutes
    cpu_pct_host = 100 * stats["cpu_s"] / stats["elapsed_s"] / args.hosts
    rss_host = (stats["rss_kib"] - stats["rss_before_kib"]) / args.hosts
    print(f"fleet: {args.hosts} hosts x {args.vms} VMs = {args.hosts * args.vms} VMs; each VM changes "
          f"state every {args.period:g} s on average ({args.hosts * args.vms * 60 / args.period:,.0f} "
          f"changes/min); {args.duration:g} s measured")
    print(f"simulated: {args.hosts} bridges in ONE process (xsd_fleet.Bridge each, own xenstore and "
          f"NATS connections) over {args.daemons} real xsd daemons (host i under /fleet/host-i), "
          f"one real nats-server; all on this {os.cpu_count()}-core machine")
    print(f"initial keys seen by the consumer: {initial}; writes made: {written[0]}; "
          f"consumer callbacks: {counts['changes']}; "
          f"bridge counters: {stats['counters']}")
    print()
    print(f"{'':34}{'xsd-fleet':>14}{'oVirt polling':>16}")
    print(f"{'messages/min (VM changes)':34}{per_min_changes:>14,.0f}{OVIRT_REQUESTS_PER_MIN:>16,}")
    print(f"{'messages/min (heartbeats, ' + format(args.heartbeat, 'g') + ' s)':34}{per_min_hb:>14,.0f}{'':>16}")
    print(f"{'messages/min (total)':34}{per_min_changes + per_min_hb:>14,.0f}{OVIRT_REQUESTS_PER_MIN:>16,}")
    print(f"{'write -> callback p50 (ms)':34}{percentile(latencies, 0.50):>14.1f}{'up to 15,000':>16}")
    print(f"{'write -> callback p99 (ms)':34}{percentile(latencies, 0.99):>14.1f}{'up to 15,000':>16}")
    print(f"{'bridge CPU per host (% of a core)':34}{cpu_pct_host:>14.3f}{'':>16}")
    print(f"{'bridge RSS per host (KiB)':34}{rss_host:>14.0f}{'':>16}")
    print(f"{'bridges process RSS, all (MiB)':34}{stats['rss_kib'] / 1024:>14.1f}{'':>16}")
    vms = args.hosts * args.vms
    even = OVIRT_REQUESTS_PER_MIN - per_min_hb              # changes/min where the totals meet
    if even > 0:
        print(f"break-even: fewer messages than oVirt's polling while the fleet makes under "
              f"{even:,.0f} changes/min (each VM changing less often than every {60 * vms / even:,.0f} s)")
    print(f"(latency samples: {len(latencies)}; mean {statistics.fmean(latencies) if latencies else 0:.1f} ms; "
          f"oVirt's requests carry the whole state whether or not it changed; a VM change "
          f"costs xsd-fleet one KV message)")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", type=int, default=200)
    p.add_argument("--vms", type=int, default=25, help="VMs per host")
    p.add_argument("--period", type=float, default=60.0, help="mean seconds between one VM's state changes")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load measured")
    p.add_argument("--daemons", type=int, default=2, help="real xsd daemons the hosts share")
    p.add_argument("--heartbeat", type=float, default=15.0, help="bridge heartbeat interval")
    p.add_argument("--role", choices=["orchestrate", "bridges"], default="orchestrate", help=argparse.SUPPRESS)
    p.add_argument("--nats", help=argparse.SUPPRESS)
    p.add_argument("--sockets", help=argparse.SUPPRESS)
    args = p.parse_args()
    if not NatsServer.available():
        sys.exit("bench_fleet: nats-server is not installed (./dev setup installs it)")
    asyncio.run(run_bridges(args) if args.role == "bridges" else orchestrate(args))


if __name__ == "__main__":
    main()
