"""CONTROL sub-commands (docs/misc/xenstore.txt, "CONTROL"; C xenstored's set).

The set is implementation specific by the spec; ours: check, help, log,
logfile, memreport, print, quota.  Unknown commands are EINVAL as in C
xenstored.
"""
import logging

from xenstore_protocol import XenstoreError

log = logging.getLogger("xsd.control")

HELP = """\
check                   verify the store's invariants
help                    this list
live-update [-s]        hand state and sockets to a new xsd process (docs/durability.md)
log [on|off]            log every request (access log)
logfile <file>          send the log to <file>
memreport [<file>]      statistics: nodes, bytes, watches, connections
print <string>          write <string> to the log
quota                   global quota values
quota <domid>           a domain's quota values and usage
quota set <name> <val>  change a global quota
stats [<domid>]         per-domain counters and usage from <domid> on, JSON, one page
"""


def run_control(d, s, fields) -> bytes:
    cmd = fields[0].decode("ascii", "replace")
    args = [f.decode("ascii", "replace") for f in fields[1:]]
    handler = _COMMANDS.get(cmd)
    if handler is None:
        raise XenstoreError("EINVAL", f"unknown control command {cmd!r}")
    text = handler(d, args)
    return text.encode() + b"\0"


def _check(d, args):
    problems = d.check()
    if not problems:
        return "OK"
    for problem in problems:
        log.error("check: %s", problem)
    return "FAIL\n" + "\n".join(problems)


def _help(d, args):
    return HELP


def _log(d, args):
    if args and args[0] not in ("on", "off"):
        raise XenstoreError("EINVAL", "log on|off")
    d.access_log = (args[0] == "on") if args else not d.access_log
    return "OK"


def _logfile(d, args):
    if len(args) != 1:
        raise XenstoreError("EINVAL", "logfile <file>")
    handler = logging.FileHandler(args[0])
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.getLogger("xsd").addHandler(handler)
    return "OK"


def _memreport(d, args):
    text = "\n".join(f"{k}: {v}" for k, v in d.statistics().items()) + "\n"
    if args:
        with open(args[0], "w", encoding="utf-8") as f:
            f.write(text)
        return "OK"
    return text


def _print(d, args):
    log.info("control print: %s", " ".join(args))
    return "OK"


def _quota(d, args):
    quotas = d.quotas
    if not args:
        return "".join(f"{name}: {value}\n" for name, value in quotas.values.items())
    if args[0] == "set":
        if len(args) != 3 or not args[2].isdigit():
            raise XenstoreError("EINVAL", "quota set <name> <value>")
        quotas.set(args[1], int(args[2]))
        d.state_changed()
        return "OK"
    if not args[0].isdigit():
        raise XenstoreError("EINVAL", "quota [<domid>|set <name> <value>]")
    domid = int(args[0])
    if not d.domains.is_introduced(domid):
        raise XenstoreError("ENOENT", f"domain {domid} not introduced")
    usage = d.usage(domid)
    return "".join(f"{name}: {usage.get(name, '-')} / {quotas.get(name, domid)}\n"
                   for name in quotas.values)


def _live_update(d, args):
    """Start replacing the daemon (liveupdate.py).  "OK": under way, this connection will
    close; "BUSY": one already is.  C xenstored's -s/-F/-t are accepted and ignored."""
    if args and args[0] in ("-a", "-b", "-f", "-c"):
        raise XenstoreError("EINVAL", "live-update: only -s (start) is supported")
    if d.live_update is None:
        raise XenstoreError("EINVAL", "live-update needs the socket server")
    return d.live_update()


def _stats(d, args):
    from .stats import control_text
    if len(args) > 1 or (args and not (args[0].isdigit() and int(args[0]) < 1 << 16)):
        raise XenstoreError("EINVAL", "stats [<domid>]")
    return control_text(d, int(args[0]) if args else 0)


_COMMANDS = {
    "check": _check, "help": _help, "log": _log, "logfile": _logfile,
    "memreport": _memreport, "print": _print, "quota": _quota,
    "live-update": _live_update, "stats": _stats,
}

