"""xsd-fleet: run one host's bridge until SIGTERM/SIGINT."""
import argparse
import asyncio
import logging
import signal
import socket
import sys

from watchlib.cli import version_text
from watchlib.cli.args import OneLineParser, positive_seconds
from watchlib.fleet import DEFAULT_BUCKET
from watchlib.patterns import Pattern

from .bridge import DEFAULT_PATTERNS, DEFAULT_STREAM, Bridge, StartError


def mirror_pattern(text: str) -> str:
    """argparse type: an absolute path pattern (no @name: a mirror holds nodes)."""
    try:
        special = Pattern(text).special
    except ValueError as err:
        if not text.startswith(("/", "@")):
            raise argparse.ArgumentTypeError(
                f"{text!r} is not an absolute path (a pattern looks like /local/domain/*/name)"
            ) from None
        raise argparse.ArgumentTypeError(str(err)) from None
    if special:
        raise argparse.ArgumentTypeError(f"{text!r}: a mirror holds nodes, not @names")
    return text


def parse_args(argv):
    # Defaults are written into each help text by hand: for --xenstored-path, --pattern and
    # --mock-hypervisor the default is a rule, not a value argparse could print.
    p = OneLineParser(
        prog="xsd-fleet",
        description="Mirror this host's xenstore into a NATS JetStream key-value bucket "
                    "and publish its domains' life-cycle events (docs/fleet.md).")
    p.add_argument("--host", default=socket.gethostname(),
                   help="this host's name in the keys (default: %(default)s, the host name)")
    p.add_argument("--servers", default="nats://127.0.0.1:4222",
                   help="NATS server URLs, comma separated (default: %(default)s)")
    p.add_argument("--xenstored-path", metavar="PATH",
                   help="xenstored's socket (default: $XENSTORED_PATH, else "
                        "/var/run/xenstored/socket)")
    p.add_argument("--pattern", action="append", dest="patterns", metavar="GLOB",
                   type=mirror_pattern,
                   help="an absolute path pattern to mirror, repeatable "
                        f"(default: {' '.join(DEFAULT_PATTERNS)})")
    p.add_argument("--bucket", default=DEFAULT_BUCKET,
                   help="JetStream KV bucket (default: %(default)s)")
    p.add_argument("--stream", default=DEFAULT_STREAM,
                   help="JetStream stream for domain events (default: %(default)s)")
    p.add_argument("--queue-max", type=int, default=10000, metavar="N",
                   help="changes held while the broker is slow or away; past it, reconcile "
                        "later (default: %(default)s)")
    p.add_argument("--heartbeat", type=positive_seconds, default=5.0, metavar="SECONDS",
                   help="seconds between heartbeats (default: %(default)s)")
    p.add_argument("--no-domains", action="store_true", help="publish no domain events")
    p.add_argument("--mock-hypervisor", metavar="PATH",
                   help="the mock hypervisor's table, a JSON file (default: "
                        "$XSD_MOCK_HYPERVISOR, else Xen's own on a Xen host)")
    p.add_argument("--connect-timeout", type=positive_seconds, default=30.0, metavar="SECONDS",
                   help="seconds to reach the broker and xenstored at start "
                        "(default: %(default)s)")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    p.add_argument("--version", action="version", version=version_text("xsd-fleet"))
    args = p.parse_args(argv)
    if args.queue_max < 1:
        p.error("--queue-max must be at least 1")
    return args


async def run(args) -> int:
    hypervisor = None
    if not args.no_domains:
        from watchlib.hypervisor import MOCK_ENV, MockHypervisor, NoHypervisor, default_hypervisor
        try:
            hypervisor = (MockHypervisor(args.mock_hypervisor) if args.mock_hypervisor
                          else default_hypervisor())
        except NoHypervisor:
            # The library's message speaks to library users (hypervisor=...); this to ours.
            print(f"xsd-fleet: no hypervisor here: not a Xen host (no /dev/xen/privcmd or "
                  f"/proc/xen/privcmd); use --mock-hypervisor PATH, set ${MOCK_ENV}, "
                  f"or --no-domains", file=sys.stderr)
            return 2
        except (RuntimeError, OSError, ValueError) as e:
            print(f"xsd-fleet: {e} (or --no-domains)", file=sys.stderr)
            return 2
    bridge = Bridge(args.host, servers=args.servers.split(","), xenstored_path=args.xenstored_path,
                    patterns=args.patterns or DEFAULT_PATTERNS, bucket=args.bucket,
                    stream=args.stream, queue_max=args.queue_max, heartbeat=args.heartbeat,
                    hypervisor=hypervisor, domains=not args.no_domains,
                    connect_timeout=args.connect_timeout)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await bridge.start()
    except StartError as e:
        print(f"xsd-fleet: {e}", file=sys.stderr)
        try:
            await bridge.close()
        except Exception:
            pass
        return 1
    logging.getLogger("xsd_fleet").info("xsd-fleet %s: running", args.host)
    await stop.wait()
    await bridge.close()
    return 0


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
