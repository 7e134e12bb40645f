"""CONTROL sub-commands (docs/misc/xenstore.txt, "CONTROL"; C xenstored's set and texts).

The set is implementation specific by the spec.  The commands C xenstored 4.17 has (check,
log, live-update, logfile, memreport, print, quota, quota-soft, help) take the same
arguments and answer the same texts where the answer is not about C's internals (help,
quota, quota-soft); ours follow in ``help``.  Unknown commands, a missing or extra argument
are EINVAL as in C xenstored.

On the read-only socket a command that changes the daemon or touches a file is refused with
EROFS, the error every other changing request gets there (dispatch.MUTATES); only ``help``,
``check``, ``quota``/``quota-soft`` without ``set`` and ``memreport`` without a file remain.
"""
import errno
import logging

from xenstore_protocol import XenstoreError

from .domains import decimal
from .ops import watch_bytes
from .quota import usage_text

log = logging.getLogger("xsd.control")

# C xenstored 4.17's help text, byte for byte, then ours.
HELP = (
    "check\t\n"
    "log\ton|off\n"
    "live-update\t[-c <cmdline>] [-F] [-t <timeout>] <file>\n"
    "    Default timeout is 60 seconds.\n"
    "logfile\t<file>\n"
    "memreport\t[<file>]\n"
    "print\t<string>\n"
    "quota\t[set <name> <val>|<domid>]\n"
    "quota-soft\t[set <name> <val>]\n"
    "help\t\n"
    "xsd: live-update needs no <file>: `live-update` (or -s; -F, -t ignored) re-executes\n"
    "xsd:   xsd itself, handing state and sockets over (docs/durability.md);\n"
    "xsd: memreport without <file> answers the statistics (nodes, bytes, watches, connections).\n"
    "xsd: stats [<domid>] answers per-domain counters and usage from <domid> on, JSON, one page.\n"
)


class _Logfile:
    """The one log file ``logfile`` opened: a new call replaces it, never adds (issue 12).
    Kept here, not on the daemon, because logging's handlers are the process's anyway."""
    handler = None
    path = ""


def reopen_logfile() -> str:
    """SIGHUP: open the ``logfile`` file again by its name (logrotate moved it away);
    its name, or "" when there is none.  OSError if it cannot be opened (the old stays)."""
    if _Logfile.handler is None:
        return ""
    _install_logfile(_Logfile.path, open(_Logfile.path, "a", encoding="utf-8"))
    return _Logfile.path


def run_control(d, s, fields) -> bytes:
    cmd = fields[0].decode("ascii", "replace")
    args = [f.decode("ascii", "replace") for f in fields[1:]]
    entry = _COMMANDS.get(cmd)
    if entry is None:
        raise XenstoreError("EINVAL", f"unknown control command {cmd!r}")
    handler, changes = entry
    if s.read_only and changes(args):
        raise XenstoreError("EROFS", f"control {cmd} changes the daemon: read-only socket")
    text = handler(d, args)
    return text.encode() + b"\0"


def _no_args(args, usage):
    if args:
        raise XenstoreError("EINVAL", usage)


def _check(d, args):
    _no_args(args, "check takes no argument")
    problems = d.check()
    if not problems:
        return "OK"
    for problem in problems:
        log.error("check: %s", problem)
    return "FAIL\n" + "\n".join(problems)


def _help(d, args):
    _no_args(args, "help takes no argument")
    return HELP


def _log(d, args):
    if len(args) != 1 or args[0] not in ("on", "off"):
        raise XenstoreError("EINVAL", "log on|off")
    d.access_log = args[0] == "on"
    if d.fastpath is not None:
        d.fastpath.state_changed()  # the C path (and poller) leave every request to Python
    return "OK"


def _open_for_writing(path: str, mode: str):
    """Open a file an operator named; a bad name is the open's errno, never an EIO."""
    if not path:
        raise XenstoreError("EINVAL", "empty file name")
    try:
        return open(path, mode, encoding="utf-8")
    except OSError as err:
        name = errno.errorcode.get(err.errno, "EINVAL") if err.errno else "EINVAL"
        raise XenstoreError(name, f"cannot open {path!r}: {err.strerror}") from None


def _logfile(d, args):
    if len(args) != 1:
        raise XenstoreError("EINVAL", "logfile <file>")
    _install_logfile(args[0], _open_for_writing(args[0], "a"))
    return "OK"


def _install_logfile(path: str, stream) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger("xsd")
    old, _Logfile.handler, _Logfile.path = _Logfile.handler, handler, path
    root.addHandler(handler)
    if old is not None:
        root.removeHandler(old)
        old.close()
        old.stream.close()


def _memreport(d, args):
    if len(args) > 1:
        raise XenstoreError("EINVAL", "memreport [<file>]")
    text = "".join(f"{k}: {v}\n" for k, v in d.statistics().items())
    if args:
        with _open_for_writing(args[0], "a") as f:
            f.write(text)
        return "OK"
    return text


def _print(d, args):
    if len(args) != 1:
        raise XenstoreError("EINVAL", "print <string>")
    log.info("control print: %s", args[0])
    return "OK"


def _set_value(args):
    """``set <name> <value>``: a value is a positive decimal number (C refuses 0 here)."""
    if len(args) != 3:
        raise XenstoreError("EINVAL", "set <name> <value>")
    value = decimal(args[2].encode("ascii", "replace"))
    if value == 0:
        raise XenstoreError("EINVAL", "a quota value is at least 1")
    return args[1], value


def _quota(d, args):
    quotas = d.quotas
    if not args:
        return quotas.settings_text()
    if args[0] == "set":
        name, value = _set_value(args)
        quotas.set(name, value)
        d.state_changed()
        return "OK"
    if len(args) != 1:
        raise XenstoreError("EINVAL", "quota [set <name> <val>|<domid>]")
    domid = decimal(args[0].encode("ascii", "replace"))
    if not d.domains.is_introduced(domid):
        raise XenstoreError("ENOENT", f"domain {domid} not introduced")
    return usage_text(domid, _usage(d, domid))


def _usage(d, domid: int) -> dict:
    """What ``quota <domid>`` shows: the daemon's counts plus memory (quota.py's formulas)."""
    usage = dict(d.usage(domid))
    usage["memory"] = d.store.bytes_of(domid) + sum(
        watch_bytes(s) for s in d.sessions if s.domid == domid)
    return usage


def _quota_soft(d, args):
    quotas = d.quotas
    if not args:
        return quotas.settings_text(soft=True)
    if args[0] != "set":
        raise XenstoreError("EINVAL", "quota-soft [set <name> <val>]")
    name, value = _set_value(args)
    quotas.set_soft(name, value)
    d.state_changed()
    return "OK"


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
    if len(args) > 1:
        raise XenstoreError("EINVAL", "stats [<domid>]")
    return control_text(d, decimal(args[0].encode("ascii", "replace"), 0xFFFF) if args else 0)


def _never(args):
    return False


def _always(args):
    return True


def _when_set(args):
    return bool(args) and args[0] == "set"


def _when_file(args):
    return bool(args)


# command: (handler, does it change the daemon or touch a file, given its arguments?)
_COMMANDS = {
    "check": (_check, _never),
    "help": (_help, _never),
    "log": (_log, _always),
    "logfile": (_logfile, _always),
    "memreport": (_memreport, _when_file),
    "print": (_print, _always),          # writes the log: a file
    "quota": (_quota, _when_set),
    "quota-soft": (_quota_soft, _when_set),
    "live-update": (_live_update, _always),
    "stats": (_stats, _never),
}
