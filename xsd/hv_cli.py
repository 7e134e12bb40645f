"""``xsd-hv``: drive the mock hypervisor of a running xsd (or of a run dir) from outside.

    xsd-hv create [--name N] [--domid D] [--introduce]   a new guest (prints its domid)
    xsd-hv introduce DOMID          the toolstack's part: /local/domain/DOMID, /vm, INTRODUCE
    xsd-hv shutdown DOMID [--reason poweroff|reboot|suspend|crash|watchdog|soft_reset]
    xsd-hv crash DOMID | resume DOMID
    xsd-hv destroy DOMID [--cleanup]   --cleanup also removes the toolstack's nodes
    xsd-hv list [--json]
    xsd-hv guest DOMID read|write|ls|rm|mkdir|perms ARGS...   act as the guest, over its ring

The run dir is ``--rundir``, else ``$XENSTORED_RUNDIR``, else the directory of
``$XENSTORED_PATH`` (what ``xsd`` prints at start), else /var/run/xenstored.
Every change rewrites the domain table, which raises VIRQ_DOM_EXC in the
daemon.  ``toolstack_introduce`` and ``toolstack_cleanup`` are the Python
side of the toolstack steps (what ``xl create`` / ``xl destroy`` write).
"""
import argparse
import json
import os
import re
import sys

from xenstore_protocol import Op, XenstoreError

from . import __version__
from watchlib.cli.args import OneLineParser
from watchlib.sockets import daemon_socket

from .config import DEFAULT_RUNDIR
from .hypervisor.base import SHUTDOWN_REASONS
from .hypervisor.mock import TABLE, MockControl, table_path

# Directories a guest owns under its home, as libxl creates them (owner: the guest).
GUEST_DIRS = ("data", "device", "control", "drivers", "feature", "attr", "error")


def default_rundir() -> str:
    if os.environ.get("XENSTORED_RUNDIR"):
        return os.environ["XENSTORED_RUNDIR"]
    if os.environ.get("XENSTORED_PATH"):
        return os.path.dirname(os.path.abspath(os.environ["XENSTORED_PATH"]))
    return DEFAULT_RUNDIR


# The form xl and libxl write under /vm/ (libxl_uuid's LIBXL_UUID_FMT: 8-4-4-4-12 hex digits).
UUID_FORM = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def uuid_arg(text: str) -> str:
    """argparse type: a domain's uuid, 8-4-4-4-12 hex digits (it names /vm/<uuid>)."""
    if not UUID_FORM.fullmatch(text.lower()):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a uuid (want 8-4-4-4-12 hex digits, "
            "e.g. 6b8e1f0a-3c2d-4e5f-8a9b-0c1d2e3f4a5b)")
    return text.lower()


def socket_path(rundir: str) -> str:
    return daemon_socket(run_dir=rundir)


def toolstack_introduce(client, row) -> None:
    """Write what a toolstack writes for a new domain, then INTRODUCE it (over ``client``, dom0)."""
    domid, uuid = row.domid, row["uuid"]
    home, vm = f"/local/domain/{domid}", f"/vm/{uuid}"
    client.mkdir(home)
    client.set_perms(home, "n0", f"r{domid}")       # the guest reads its home, dom0 owns it
    client.mkdir(vm)
    client.set_perms(vm, "n0", f"r{domid}")
    client.write(f"{vm}/name", (row.get("name") or "").encode())
    client.write(f"{vm}/uuid", uuid.encode())
    client.write(f"{home}/vm", vm.encode())
    client.write(f"{home}/name", (row.get("name") or "").encode())
    client.write(f"{home}/domid", str(domid).encode())
    for sub in GUEST_DIRS:
        client.mkdir(f"{home}/{sub}")
        client.set_perms(f"{home}/{sub}", f"n{domid}")
    client.ok(Op.INTRODUCE, str(domid).encode(), str(row["store_mfn"]).encode(),
              str(row["store_port"]).encode())


def toolstack_cleanup(client, domid: int, uuid: str = "") -> None:
    """What a toolstack removes after destroying a domain."""
    client.rm(f"/local/domain/{domid}")
    if uuid:
        client.rm(f"/vm/{uuid}")


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="xsd-hv", description="control xsd's mock hypervisor")
    parser.add_argument("--version", action="version", version=f"xsd-hv {__version__}")
    parser.add_argument("--rundir", help="the daemon's run dir, where the mock hypervisor's "
                                         "table is (default: $XENSTORED_RUNDIR, else the "
                                         "directory of $XENSTORED_PATH, else "
                                         f"{DEFAULT_RUNDIR})")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("create", help="create a running guest with a ring page")
    p.add_argument("--name", default="")
    p.add_argument("--domid", type=int)
    p.add_argument("--uuid", type=uuid_arg, help="its uuid, 8-4-4-4-12 hex digits "
                                                 "(default: a new random one)")
    p.add_argument("--introduce", action="store_true",
                   help="also do the toolstack's part over the daemon's socket")
    p = sub.add_parser("introduce", help="write the guest's nodes and INTRODUCE it")
    p.add_argument("domid", type=int)
    p = sub.add_parser("shutdown", help="the guest shuts down (reason as in sched.h)")
    p.add_argument("domid", type=int)
    p.add_argument("--reason", default="poweroff", choices=SHUTDOWN_REASONS)
    for name, text in (("crash", "the guest crashes"), ("resume", "a shut-down guest runs again")):
        sub.add_parser(name, help=text).add_argument("domid", type=int)
    p = sub.add_parser("destroy", help="the guest is gone")
    p.add_argument("domid", type=int)
    p.add_argument("--cleanup", action="store_true", help="also rm its toolstack nodes")
    p = sub.add_parser("list", help="the domain table")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("guest", help="act as the guest over its ring: read|write|ls|rm|mkdir|perms")
    p.add_argument("domid", type=int)
    p.add_argument("op", choices=("read", "write", "ls", "rm", "mkdir", "perms"))
    p.add_argument("args", nargs="*")
    return parser


class Unreachable(Exception):
    """The daemon's socket does not answer; the message names it."""


def _connect(rundir: str):
    from .hypervisor.guest_client import SocketClient
    path = socket_path(rundir)
    try:
        return SocketClient(path)
    except OSError as err:
        raise Unreachable(f"cannot reach xsd at {path}: {err.strerror or err}") from None


def _with_socket(rundir: str, fn):
    with _connect(rundir) as client:
        return fn(client)


def _create_introduced(control, rundir: str, args):
    """create --introduce: connect first, so that with the daemon down nothing is made;
    if the toolstack's part fails half-way, the domain and its nodes go again."""
    with _connect(rundir) as client:
        row = control.create(name=args.name, domid=args.domid, uuid=args.uuid)
        try:
            toolstack_introduce(client, row)
        except BaseException:
            control.destroy(row.domid)
            for path in (f"/local/domain/{row.domid}", f"/vm/{row['uuid']}"):
                try:
                    client.rm(path)
                except (XenstoreError, OSError, TimeoutError):
                    pass                # what could not be written needs no removing
            raise
    return row


def _guest(rundir: str, domid: int, op: str, args: list) -> int:
    from .hypervisor.guest_client import GuestClient
    need = {"read": 1, "write": 2, "ls": 1, "rm": 1, "mkdir": 1, "perms": 1}[op]
    if len(args) < need:
        print(f"xsd-hv guest: {op} needs {need} argument(s)", file=sys.stderr)
        return 2
    with GuestClient(rundir, domid) as guest:
        if op == "read":
            sys.stdout.buffer.write(guest.read(args[0]) + b"\n")
        elif op == "write":
            guest.write(args[0], args[1].encode())
        elif op == "ls":
            for name in guest.directory(args[0]):
                print(name)
        elif op == "rm":
            guest.rm(args[0])
        elif op == "mkdir":
            guest.mkdir(args[0])
        elif op == "perms":
            if len(args) > 1:
                guest.set_perms(args[0], *args[1:])
            else:
                print(" ".join(guest.get_perms(args[0])))
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    rundir = args.rundir or default_rundir()
    control = MockControl(rundir)
    if args.cmd != "create" and not os.path.exists(table_path(rundir)):
        # Only create makes the table; anything else there would act on nothing.
        print(f"xsd-hv: no simulated hypervisor at {rundir} (no {TABLE} there; start xsd "
              "with its mock hypervisor there, or xsd-hv create)", file=sys.stderr)
        return 1
    try:
        if args.cmd == "create":
            if args.introduce:
                row = _create_introduced(control, rundir, args)
            else:
                row = control.create(name=args.name, domid=args.domid, uuid=args.uuid)
            print(row.domid)
        elif args.cmd == "introduce":
            row = control.record(args.domid)
            _with_socket(rundir, lambda c: toolstack_introduce(c, row))
        elif args.cmd == "shutdown":
            control.shutdown(args.domid, args.reason)
        elif args.cmd == "crash":
            control.crash(args.domid)
        elif args.cmd == "resume":
            control.resume(args.domid)
        elif args.cmd == "destroy":
            info = control.destroy(args.domid)
            if args.cleanup:
                _with_socket(rundir, lambda c: toolstack_cleanup(c, info.domid, info.uuid))
        elif args.cmd == "list":
            infos = control.list()
            if args.json:
                print(json.dumps([info._asdict() for info in infos], indent=1))
            else:
                print(f"{'domid':>5}  {'state':<18} {'uuid':<36}  name")
                for info in infos:
                    state = info.state + (f"({info.shutdown_reason})" if info.shutdown_reason else "")
                    print(f"{info.domid:>5}  {state:<18} {info.uuid:<36}  {info.name}")
        elif args.cmd == "guest":
            return _guest(rundir, args.domid, args.op, args.args)
    except (KeyError, ValueError) as err:
        print(f"xsd-hv: {err.args[0] if err.args else err}", file=sys.stderr)
        return 1
    except XenstoreError as err:
        print(f"xsd-hv: xenstored refused: {err}", file=sys.stderr)
        return 1
    except Unreachable as err:
        print(f"xsd-hv: {err}", file=sys.stderr)
        return 1
    except (OSError, TimeoutError) as err:
        print(f"xsd-hv: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
