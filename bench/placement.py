"""Where a benchmark's daemon and its clients run: on CPUs of their own, on one CPU, or
wherever the scheduler puts them.

With one sequential client, a round trip's rate is set by whether client and daemon share a
CPU (one CPU: the client's CPU plus the daemon's per request; two: a cross-CPU wakeup per
message), by about 3x on this machine; left to the scheduler, a one-client row measures
where it put them (docs/benchmarks.md, "placement").

``place(pid, placement)`` pins the daemon ``pid`` and everything it spawned (every thread of
every process below it; what they start later inherits the mask) to the daemon's CPUs, and
this process, so every client it starts (xsbench and its children, or its own RawClient), to
the clients' CPUs.
"""
import os

# The CPUs this process may run on when it starts: the whole machine, or its cgroup's share.
CPUS = tuple(sorted(os.sched_getaffinity(0)))

PLACEMENTS = {
    "split": "daemon on one CPU, the clients on another",
    "shared": "daemon and clients on the same CPU",
    "none": "the scheduler's choice",
}


def cpu_sets(placement: str, cpus=CPUS):
    """(the daemon's CPUs, the clients' CPUs) for ``placement``: the first CPU is the
    daemon's; ``split`` gives the clients the second, ``shared`` the daemon's."""
    if placement == "none":
        return set(cpus), set(cpus)
    if placement == "shared":
        return {cpus[0]}, {cpus[0]}
    if placement == "split":
        if len(cpus) < 2:
            raise ValueError(f"--pin split needs two CPUs; this process may use {list(cpus)}")
        return {cpus[0]}, {cpus[1]}
    raise ValueError(f"unknown placement {placement!r}; expected one of {', '.join(PLACEMENTS)}")


def describe(placement: str, cpus=CPUS) -> str:
    """The placement as the table's footer states it."""
    daemon, clients = cpu_sets(placement, cpus)
    if placement == "none":
        return f"none ({PLACEMENTS['none']} over CPUs {_cpu_list(daemon)})"
    return (f"{placement} (the daemon and everything it spawns on CPU {_cpu_list(daemon)}, "
            f"the clients on CPU {_cpu_list(clients)})")


def _cpu_list(cpus) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def process_tree(pid: int):
    """Every thread id of ``pid`` and of the processes below it (/proc/TID/children)."""
    tids, pending = [], [pid]
    while pending:
        proc = pending.pop()
        try:
            threads = os.listdir(f"/proc/{proc}/task")
        except FileNotFoundError:               # gone meanwhile
            continue
        for tid in threads:
            tids.append(int(tid))
            try:
                with open(f"/proc/{proc}/task/{tid}/children", encoding="ascii") as f:
                    pending.extend(int(child) for child in f.read().split())
            except FileNotFoundError:
                pass
    return tids


def place(pid: int, placement: str, cpus=CPUS) -> None:
    """Pin daemon ``pid``'s whole tree to the daemon's CPUs and this process (so every
    client it starts from now on) to the clients'. ``none`` gives both every CPU back."""
    daemon, clients = cpu_sets(placement, cpus)
    for tid in process_tree(pid):
        try:
            os.sched_setaffinity(tid, daemon)
        except ProcessLookupError:              # a thread that ended meanwhile
            pass
    os.sched_setaffinity(0, clients)
