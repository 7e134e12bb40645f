"""Command line: arguments -> Config -> serve on uvloop.

Every option of the C xenstored 4.17 (tools/xenstored/core.c, ``xenstored --help``)
is accepted with its meaning, so start-up scripts and ``XENSTORED_ARGS`` written for
it work unchanged; the few that mean nothing to xsd are accepted and say so in
``--help``.  A bad command line or start-up condition is one line on stderr and
exit status 1 (2 for a bad command line), never a traceback.
"""
import argparse
import asyncio
import logging
import math
import os
import resource
import sys

from . import __version__
from .config import DEFAULT_RUNDIR, Config, default_rundir
from .core.quota import DEFAULTS as QUOTA_DEFAULTS
from .core.quota import VALUE_MAX as QUOTA_VALUE_MAX

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# The C daemon's per-quota options (-E -S -W -t -A -M) and the quota each sets.
C_QUOTA_OPTIONS = (
    ("-E", "--entry-nb", "nodes", "nodes a domain may own"),
    ("-S", "--entry-size", "node-size", "bytes of one node's value"),
    ("-W", "--watch-nb", "watches", "watches a domain may hold"),
    ("-t", "--transaction", "transactions", "transactions a domain may have open"),
    ("-A", "--perm-nb", "permissions", "permissions on one node"),
    ("-M", "--path-max", "path-max", "length of a node path (not counting "
                                     "/local/domain/<domid>/)"),
)


class Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line, as for every start-up error (argparse prints the usage too)."""
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _log_level(text: str) -> str:
    level = text.upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"unknown level {text!r} (one of {', '.join(LOG_LEVELS)})")
    return level


def _assignment(known, number=None):
    """``WHAT=NB`` as -Q, -q and -w take it, WHAT one of ``known``, NB read by ``number``."""
    number = number or _count

    def parse(text: str):
        what, sep, value = text.partition("=")
        if not sep or what not in known:
            raise argparse.ArgumentTypeError(f"{text!r}: want WHAT=N, WHAT one of {', '.join(known)}")
        try:
            return what, number(value)
        except argparse.ArgumentTypeError as err:
            raise argparse.ArgumentTypeError(f"{text!r}: {err}") from None
    return parse


def _count(text: str) -> int:
    """A whole number, 0 or more, in decimal (what every numeric option takes)."""
    try:
        number = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return number


def _positive(text: str) -> int:
    """A count of 1 or more: a bound that 0 would turn into "nothing ever passes"."""
    number = _count(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return number


def _seconds(text: str) -> float:
    """A time interval: a finite number of seconds, more than 0 (nan, inf or 0 would
    reach the event loop's timers, which they break)."""
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(number) or number <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number of seconds, "
                                         "more than 0")
    return number


def _quota(text: str) -> int:
    """A quota value: a count that fits the quota table (xsd/core/quota.py, VALUE_MAX)."""
    number = _count(text)
    if number > QUOTA_VALUE_MAX:
        raise argparse.ArgumentTypeError(f"{text!r} is more than {QUOTA_VALUE_MAX}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="xsd", add_help=False,
        description="xenstore-compatible daemon. Runs in the foreground (as `xenstored "
                    "--no-fork`) unless --fork. Every option of the C xenstored 4.17 is "
                    "accepted (see 'xenstored options'); docs/xen-host.md tells how to put "
                    "xsd in its place.")
    parser.add_argument("-H", "-h", "--help", action="help", help="show this message and exit")
    parser.add_argument("--version", action="version", version=f"xsd {__version__}")
    parser.add_argument("--rundir", metavar="DIR", help="directory for socket and socket_ro "
                        f"(default: $XENSTORED_RUNDIR, else {DEFAULT_RUNDIR})")
    parser.add_argument("--max-watch-events", type=_positive, default=1024, metavar="N",
                        help="watch events held for a client that is not reading, beyond "
                             "which they are dropped (default %(default)s)")
    parser.add_argument("--out-high-water", type=_positive, default=1 << 20, metavar="BYTES",
                        help="bytes buffered for a client before its requests wait "
                             "(default %(default)s)")
    parser.add_argument("--out-budget", type=_count, default=0, metavar="BYTES",
                        help="bytes held for all clients that do not read, together; beyond it "
                             "their watch events are dropped (default 0: 64 x --out-high-water)")
    parser.add_argument("--python-requests", action="store_true",
                        help="answer every request in Python, the C request path off, for "
                             "comparison (default off: the common requests are answered in C "
                             "on the C store; docs/internals.md)")
    parser.add_argument("--python-watches", action="store_true",
                        help="keep watches in the Python registry, for comparison (default "
                             "off: on the C store each watch is a C record, matched in C)")
    parser.add_argument("--python-fires", action="store_true",
                        help="the C request path stops after each watched change and Python "
                             "fires it, for comparison (default off: with the C registry the "
                             "engine fires it and returns the deliveries with its batch)")
    parser.add_argument("--python-poll", action="store_true",
                        help="each socket's bytes go from its transport through Python to the "
                             "C request path, for comparison (default off: over the C store, "
                             "the C poller reads the sockets and answers and writes what it "
                             "can itself)")
    for name, default in QUOTA_DEFAULTS.items():
        parser.add_argument(f"--quota-{name}", type=_quota, default=None, metavar="N",
                            help=f"per-domain {name} quota (default {default}; 0 = unlimited)")
    parser.add_argument("--hypervisor", choices=("auto", "mock", "xen"), default="auto",
                        help="where guests come from: Xen, or the simulated hypervisor under the "
                             "run dir (default auto: xen if /dev/xen/privcmd or /proc/xen/privcmd "
                             "exists, else mock)")
    parser.add_argument("--server-features", type=_count, default=3, metavar="MASK",
                        help="XENSTORE_SERVER_FEATURE_* bits offered to guests: 1 ring "
                             "reconnection, 2 error field (default 3, both, as C xenstored)")
    parser.add_argument("--log-level", type=_log_level, metavar="LEVEL",
                        default=os.environ.get("XSD_LOG_LEVEL", "INFO"),
                        help=f"one of {', '.join(LOG_LEVELS)} (default $XSD_LOG_LEVEL, else INFO)")
    parser.add_argument("--log-summary-interval", type=_seconds, default=60.0, metavar="SECONDS",
                        help="repeated warnings (quota refusals, dropped watch events) are "
                             "summarised once per interval (default %(default)s)")
    parser.add_argument("--metrics", default="", metavar="ADDR",
                        help="serve Prometheus metrics on ADDR: HOST:PORT (e.g. 127.0.0.1:9101) "
                             "or a Unix socket path (default: off; docs/operators.md)")
    durable = parser.add_argument_group("durability (docs/durability.md)")
    durable.add_argument("--state-dir", default=None, metavar="DIR",
                         help="where the snapshot and journal live (default: the run dir)")
    durable.add_argument("--no-persist", action="store_true",
                         help="keep the store in memory only, as the Xen daemons do "
                              "(default: persist)")
    durable.add_argument("--fsync", choices=("batch", "interval", "never"), default="batch",
                         help="batch: fsync every batch before its replies leave (default); "
                              "interval: every --fsync-interval seconds; never: leave it to the "
                              "OS (all three survive a crash of the daemon, only batch a crash "
                              "of the machine)")
    durable.add_argument("--fsync-interval", type=_seconds, default=1.0, metavar="SECONDS",
                         help="with --fsync interval (default %(default)s)")
    durable.add_argument("--journal-max-bytes", type=_count, default=16 << 20, metavar="N",
                         help="snapshot once the journal is past N bytes or twice the snapshot "
                              "(default %(default)s)")
    durable.add_argument("--journal-salvage", action="store_true",
                         help="start on the journal records before a damaged one, losing the "
                              "rest (default: refuse to start)")
    durable.add_argument("--live-restore", default="", help=argparse.SUPPRESS)

    c = parser.add_argument_group(
        "xenstored options",
        "The C xenstored's options, with its meaning; those marked 'accepted' mean nothing "
        "to xsd and are ignored.")
    c.add_argument("-D", "--no-domain-init", action="store_true",
                   help="do not write /local/domain/0/{name,domid} at start (default: write them)")
    c.add_argument("-F", "--pid-file", default="", metavar="FILE",
                   help="write the daemon's pid here (default: none)")
    c.add_argument("-N", "--no-fork", action="store_true",
                   help="stay in the foreground (xsd's default; see --fork)")
    c.add_argument("--fork", action="store_true",
                   help="go to the background as the C xenstored does without -N, for init "
                        "scripts that expect it (Debian's /etc/init.d/xen): the command returns "
                        "0 once both sockets accept, 1 if the start failed (default: foreground)")
    c.add_argument("-P", "--output-pid", action="store_true",
                   help="print the daemon's pid on stdout at start (default: no)")
    c.add_argument("-T", "--trace-file", default="", metavar="FILE",
                   help="append one line per request, reply, watch event and connection "
                        "to FILE (default: none)")
    for short, long, quota, text in C_QUOTA_OPTIONS:
        default = QUOTA_DEFAULTS[quota]
        c.add_argument(short, long, dest="c_" + quota.replace("-", "_"), type=_quota,
                       default=None, metavar="N",
                       help=f"quota {quota}: {text} (as --quota-{quota}; default {default})")
    c.add_argument("-Q", "--quota", action="append", default=[], metavar="WHAT=N",
                   type=_assignment(tuple(QUOTA_DEFAULTS), _quota),
                   help=f"set quota WHAT ({', '.join(QUOTA_DEFAULTS)}) to N")
    c.add_argument("-q", "--quota-soft", action="append", default=[], metavar="WHAT=N",
                   type=_assignment(("memory",), _quota),
                   help="soft quota: a logged warning past N (WHAT: memory; default none)")
    c.add_argument("-w", "--timeout", action="append", default=[], metavar="WHAT=SECONDS",
                   type=_assignment(("watch-event",)),
                   help="accepted (watch-event): xsd never holds a request back for an event "
                        "and bounds events per client by --max-watch-events instead")
    c.add_argument("-R", "--no-recovery", action="store_true",
                   help="accepted: xsd never repairs a damaged store at run time; a damaged "
                        "journal stops the start unless --journal-salvage")
    c.add_argument("-I", "--internal-db", nargs="?", const="on", choices=("on", "off"),
                   metavar="on|off",
                   help="accepted: xsd's tree is always in memory; what reaches the disk is "
                        "its journal (--state-dir, --no-persist)")
    c.add_argument("-K", "--keep-orphans", action="store_true",
                   help="keep the nodes of released domains (default: delete them)")
    c.add_argument("-V", "--verbose", action="store_true",
                   help="log at DEBUG level (as --log-level DEBUG)")
    c.add_argument("-U", "--live-update", action="store_true",
                   help="accepted: xsd's live update hands its state over by itself "
                        "(CONTROL live-update, SIGUSR1; docs/durability.md)")
    for long in ("--event", "--master-domid", "--priv-domid"):
        c.add_argument(long, type=_count, metavar="N",
                       help="accepted: for a xenstore stub domain, which xsd is not")
    return parser


# Config fields given as the option of the same name says.
SAME_NAMED = (
    "no_domain_init", "keep_orphans", "max_watch_events", "out_high_water", "out_budget",
    "pid_file", "output_pid", "trace_file", "hypervisor", "server_features", "fsync",
    "fsync_interval", "journal_max_bytes", "journal_salvage", "metrics",
    "log_summary_interval", "live_restore", "python_requests", "python_watches",
    "python_fires", "python_poll",
)


def parse_args(argv=None) -> Config:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.metrics:
        from .metrics import parse_address
        try:
            parse_address(args.metrics)
        except ValueError as err:
            parser.error(f"--metrics: {err}")
    rundir = args.rundir or default_rundir()
    quotas = {name: getattr(args, "quota_" + name.replace("-", "_")) for name in QUOTA_DEFAULTS}
    for _short, _long, quota, _text in C_QUOTA_OPTIONS:
        value = getattr(args, "c_" + quota.replace("-", "_"))
        if value is not None:
            quotas[quota] = value
    quotas.update(args.quota)          # -Q WHAT=N, last one wins as in C
    return Config(
        **{name: getattr(args, name) for name in SAME_NAMED},
        rundir=rundir,
        quotas={k: v for k, v in quotas.items() if v is not None},
        soft_quotas=dict(args.quota_soft),
        log_level="DEBUG" if args.verbose else args.log_level,
        state_dir="" if args.no_persist else (args.state_dir or rundir),
        fork=args.fork and not args.no_fork and not args.live_restore,
        argv=tuple(argv),
    )


def raise_fd_limit() -> tuple:
    """Soft RLIMIT_NOFILE up to the hard limit: every client holds a descriptor
    (the C daemon's systemd unit sets LimitNOFILE for the same reason)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft, hard


def _fork() -> int:
    """Background: the parent waits for the child's word that both sockets accept and
    exits 0 (1 if the child ends first, its error already on the shared stderr).
    The child, in its own session, returns the descriptor to send that word on."""
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    if os.fork() != 0:
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            word = pipe.read(1)
        os._exit(0 if word == b"R" else 1)
    os.close(read_end)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.close(devnull)
    return write_end


def _announce(config) -> None:
    """What a script reads on stdout once the daemon serves: -P's pid (as C xenstored)
    and the line to point clients at it.  Never before both sockets accept, so a start
    that fails prints nothing here."""
    if config.output_pid:
        print(os.getpid(), flush=True)
    print(f"export XENSTORED_PATH={config.socket_path}", flush=True)


def main(argv=None) -> int:
    config = parse_args(argv)
    from .logs import configure
    configure(config.log_level)
    log = logging.getLogger("xsd")
    try:                          # XSD_NATIVE chooses the watch matcher (xsd/_native)
        from ._native import BACKEND
    except ImportError as err:    # a bad XSD_NATIVE, or =c without a usable build
        print(f"xsd: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    from . import startup
    try:
        startup.check(config)
    except startup.StartupError as err:
        print(f"xsd: {err}", file=sys.stderr)
        return 1
    if config.fork:
        config.ready_fd = _fork()
    soft, _hard = raise_fd_limit()
    from .transport.server import Server
    log.info("xsd %s, native backend %s, descriptors %d, log level %s",
             __version__, BACKEND, soft, config.log_level)
    from .hypervisor import HypervisorError, open_hypervisor
    try:
        hypervisor = open_hypervisor(config.hypervisor, config.rundir)
    except HypervisorError as err:
        print(f"xsd: {err}", file=sys.stderr)
        return 1
    log.info("hypervisor: %s", hypervisor.describe())
    from .durability.journal import StateError
    try:
        server = Server(config, hypervisor)
    except StateError as err:
        print(f"xsd: cannot start: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"xsd: cannot use state directory {config.state_dir}: "
              f"{err.strerror or err}", file=sys.stderr)
        return 1
    try:
        import uvloop
    except ImportError:
        uvloop = None
        log.warning("uvloop not installed: running on the default asyncio loop")
    try:
        if uvloop is not None:
            uvloop.run(server.serve(on_ready=lambda: _announce(config)))
        else:
            asyncio.run(server.serve(on_ready=lambda: _announce(config)))
    except startup.StartupError as err:
        print(f"xsd: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
