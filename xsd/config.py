"""Run-time settings, with defaults that serve on a machine without Xen."""
import os
from dataclasses import dataclass, field

DEFAULT_RUNDIR = "/var/run/xenstored"    # where the Xen daemons and libxenstore look


@dataclass
class Config:
    rundir: str = DEFAULT_RUNDIR
    no_domain_init: bool = False
    keep_orphans: bool = False          # xenstored -K: keep nodes of dead domains
    quotas: dict = field(default_factory=dict)
    # Per-connection output bounds.  oxenstored's quota-maxwatchevents is 1024;
    # the transport's buffer gets 1 MiB before a client stops being served.
    max_watch_events: int = 1024
    out_high_water: int = 1 << 20
    pid_file: str = ""
    log_level: str = "INFO"

    @property
    def socket_path(self) -> str:
        return os.path.join(self.rundir, "socket")

    @property
    def ro_socket_path(self) -> str:
        return os.path.join(self.rundir, "socket_ro")
