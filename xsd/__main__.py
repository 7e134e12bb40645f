"""Command line: arguments -> Config -> serve on uvloop."""
import argparse
import asyncio
import logging
import os
import sys

from .config import DEFAULT_RUNDIR, Config
from .core.quota import DEFAULTS as QUOTA_DEFAULTS


def parse_args(argv=None) -> Config:
    parser = argparse.ArgumentParser(
        prog="xsd",
        description="xenstore-compatible daemon. Runs in the foreground (as "
                    "`xenstored --no-fork`); use your service manager to background it.")
    parser.add_argument("--rundir", help="directory for socket and socket_ro "
                        f"(default: $XENSTORED_RUNDIR, else {DEFAULT_RUNDIR})")
    parser.add_argument("-N", "--no-fork", action="store_true",
                        help="accepted for xenstored compatibility; xsd always stays in the foreground")
    parser.add_argument("-F", "--pid-file", default="", help="write the daemon's pid here")
    parser.add_argument("-D", "--no-domain-init", action="store_true",
                        help="do not write /local/domain/0/{name,domid} at start")
    parser.add_argument("-K", "--keep-orphans", action="store_true",
                        help="keep the nodes of released domains")
    parser.add_argument("--max-watch-events", type=int, default=1024,
                        help="watch events held for a client that is not reading (beyond: dropped)")
    parser.add_argument("--out-high-water", type=int, default=1 << 20,
                        help="bytes buffered for a client before its requests wait")
    parser.add_argument("--out-budget", type=int, default=0, metavar="BYTES",
                        help="bytes held for all clients that do not read, together; beyond it "
                             "their watch events are dropped (default 0: 64 x --out-high-water)")
    for name, default in QUOTA_DEFAULTS.items():
        parser.add_argument(f"--quota-{name}", type=int, default=None, metavar="N",
                            help=f"per-domain {name} quota (default {default}; 0 = unlimited)")
    parser.add_argument("--hypervisor", choices=("auto", "mock", "xen"), default="auto",
                        help="where guests come from: Xen, or the simulated hypervisor under the "
                             "run dir (default auto: xen if /dev/xen/privcmd or /proc/xen/privcmd "
                             "exists, else mock)")
    parser.add_argument("--server-features", type=int, default=3, metavar="MASK",
                        help="XENSTORE_SERVER_FEATURE_* bits offered to guests: 1 ring "
                             "reconnection, 2 error field (default 3, both, as C xenstored)")
    durable = parser.add_argument_group("durability (docs/durability.md)")
    durable.add_argument("--state-dir", default=None,
                         help="where the snapshot and journal live (default: the run dir)")
    durable.add_argument("--no-persist", action="store_true",
                         help="keep the store in memory only, as the Xen daemons do")
    durable.add_argument("--fsync", choices=("batch", "interval", "never"), default="batch",
                         help="batch: fsync every batch before its replies leave (default); "
                              "interval: every --fsync-interval seconds; never: leave it to the "
                              "OS (all three survive a crash of the daemon, only batch a crash "
                              "of the machine)")
    durable.add_argument("--fsync-interval", type=float, default=1.0, metavar="SECONDS")
    durable.add_argument("--journal-max-bytes", type=int, default=16 << 20, metavar="N",
                         help="snapshot once the journal is past N bytes or twice the snapshot")
    durable.add_argument("--journal-salvage", action="store_true",
                         help="start on the journal records before a damaged one (loses the rest)")
    durable.add_argument("--live-restore", default="", help=argparse.SUPPRESS)
    parser.add_argument("--log-level", default=os.environ.get("XSD_LOG_LEVEL", "INFO"))
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    rundir = args.rundir or os.environ.get("XENSTORED_RUNDIR") or DEFAULT_RUNDIR
    quotas = {name: getattr(args, "quota_" + name.replace("-", "_"))
              for name in QUOTA_DEFAULTS}
    return Config(
        rundir=rundir,
        no_domain_init=args.no_domain_init,
        keep_orphans=args.keep_orphans,
        quotas={k: v for k, v in quotas.items() if v is not None},
        max_watch_events=args.max_watch_events,
        out_high_water=args.out_high_water,
        out_budget=args.out_budget,
        pid_file=args.pid_file,
        log_level=args.log_level,
        hypervisor=args.hypervisor,
        server_features=args.server_features,
        state_dir="" if args.no_persist else (args.state_dir or rundir),
        fsync=args.fsync,
        fsync_interval=args.fsync_interval,
        journal_max_bytes=args.journal_max_bytes,
        journal_salvage=args.journal_salvage,
        live_restore=args.live_restore,
        argv=tuple(argv),
    )


def main(argv=None) -> int:
    config = parse_args(argv)
    logging.basicConfig(level=config.log_level.upper(),
                        format="%(asctime)s xsd[%(process)d] %(levelname)s %(name)s: %(message)s")
    from ._native import BACKEND
    from .transport.server import Server
    logging.getLogger("xsd").info("native backend: %s", BACKEND)
    from .hypervisor import HypervisorError, open_hypervisor
    try:
        hypervisor = open_hypervisor(config.hypervisor, config.rundir)
    except HypervisorError as err:
        print(f"xsd: {err}", file=sys.stderr)
        return 1
    logging.getLogger("xsd").info("hypervisor: %s", hypervisor.describe())
    from .durability.journal import StateError
    try:
        server = Server(config, hypervisor)
    except StateError as err:
        logging.getLogger("xsd").critical("cannot start: %s", err)
        return 1
    sock = config.socket_path
    print(f"export XENSTORED_PATH={sock}", flush=True)
    try:
        import uvloop
    except ImportError:
        uvloop = None
        logging.getLogger("xsd").warning("uvloop not installed: running on the default asyncio loop")
    if uvloop is not None:
        uvloop.run(server.serve())
    else:
        asyncio.run(server.serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
