"""Run-time settings, with defaults that serve on a machine without Xen."""
import os
from dataclasses import dataclass, field

# Where the Xen daemons and libxenstore look: one rule for all (watchlib.sockets).
from watchlib.sockets import DEFAULT_RUNDIR, RO_SOCKET_NAME, SOCKET_NAME
from watchlib.sockets import rundir as default_rundir  # noqa: F401  ($XENSTORED_RUNDIR, else the default)


@dataclass
class Config:
    rundir: str = DEFAULT_RUNDIR
    no_domain_init: bool = False
    keep_orphans: bool = False          # xenstored -K: keep nodes of dead domains
    quotas: dict = field(default_factory=dict)
    soft_quotas: dict = field(default_factory=dict)     # xenstored -q: warn past these
    # Per-connection output bounds.  oxenstored's quota-maxwatchevents is 1024;
    # the transport's buffer gets 1 MiB before a client stops being served.
    max_watch_events: int = 1024
    out_high_water: int = 1 << 20
    # Daemon-wide bound on output held for clients that do not read (session.OutputBudget);
    # 0: 64 clients' worth of out_high_water.
    out_budget: int = 0
    pid_file: str = ""
    output_pid: bool = False            # xenstored -P: print the pid at start
    trace_file: str = ""                # xenstored -T: one line per request, reply, event
    log_level: str = "INFO"
    # Guests (docs/guests.md): "auto" = Xen where /dev/xen/privcmd or
    # /proc/xen/privcmd exists, else the mock hypervisor under the run dir.
    hypervisor: str = "auto"
    # XENSTORE_SERVER_FEATURE_* bits offered to guests (GET_FEATURE, the ring's
    # server_features); the ring implements RECONNECTION (1) and ERROR (2).
    server_features: int = 3
    # Durability (docs/durability.md).  "" keeps the store in memory only, as the
    # Xen daemons do (--no-persist); the command line defaults it to the run dir.
    state_dir: str = ""
    fsync: str = "batch"                # batch | interval | never
    fsync_interval: float = 1.0         # seconds, with fsync="interval"
    journal_max_bytes: int = 16 << 20   # snapshot once the journal is past this (or 2x the snapshot)
    journal_salvage: bool = False       # start on the records before a damaged one
    # Operators (docs/operators.md): Prometheus endpoint ("" = off), HOST:PORT or a
    # socket path; repeated warnings summarised once per this many seconds.
    metrics: str = ""
    log_summary_interval: float = 60.0
    # Answer every request in Python (fastpath.py's C request path off): for comparison.
    python_requests: bool = False
    # Keep watches in the Python registry (watches.WatchRegistry), not in C: for comparison.
    python_watches: bool = False
    # Fire the C request path's watched changes from Python, one stop per change (as before
    # the engine fired them through the C registry itself): for comparison.
    python_fires: bool = False
    # Let each socket's transport read it and hand the bytes to Python, rather than the C
    # poller (transport/poller.py): for comparison.
    python_poll: bool = False
    live_restore: str = ""              # state file handed over by a live update (internal)
    fork: bool = False                  # --fork: background, as xenstored without -N
    ready_fd: int = -1                  # --fork: the child says "R" here once serving
    argv: tuple = ()                    # the command line, for the live update's exec

    @property
    def socket_path(self) -> str:
        return os.path.join(self.rundir, SOCKET_NAME)

    @property
    def ro_socket_path(self) -> str:
        return os.path.join(self.rundir, RO_SOCKET_NAME)
