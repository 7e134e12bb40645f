"""``xenstore-control``: Xen 4.17's tool (tools/xenstore/xenstore_control.c), rewritten
over watchlib so that it runs anywhere a daemon's socket is: Debian's
/usr/bin/xenstore-control is a wrapper that refuses to run without Xen in
/sys/hypervisor.  Same arguments, output, messages and exit codes (2 usage,
1 no daemon, 3 the command failed), checked against the C tool in tests/cli/.

    xenstore-control <command> [<arg>...]      CONTROL <command> <args>; prints the answer
    xenstore-control live-update [-F] [-t SECONDS] [-c CMDLINE] [BINARY]

``live-update``: the C tool first sends ``-f BINARY`` (and ``-c CMDLINE``), then
``-s [-F] -t SECONDS`` until the answer is not ``BUSY``.  xsd needs no binary: it
re-executes itself with its own arguments (docs/durability.md), so without BINARY
this tool sends the start request alone; with BINARY it does what the C tool does
(xsd answers the ``-f`` with EINVAL, the C daemon takes it).
"""
import errno
import sys
import time

from xenstore_protocol import join_fields

from .xs import XsError, XsHandle, quiet_watchlib_logging

LIVE_UPDATE_TIMEOUT = 60         # seconds: the C tool's default for -t


class Failed(Exception):
    """The tool's exit status, its message already printed."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


def _args(*words: str) -> bytes:
    return join_fields(*(w.encode() for w in words))


def _text(reply: bytes) -> str:
    """The answer as printf("%s") shows it: up to the first NUL."""
    return reply.split(b"\0", 1)[0].decode("utf-8", "replace")


def _command(xsh, argv) -> int:
    try:
        reply = xsh.control_command(argv[1].encode(), _args(*argv[2:]))
    except XsError as err:
        if err.errno == errno.EINVAL:
            try:
                help_text = _text(xsh.control_command(b"help"))
            except XsError:
                sys.stderr.write("Error when executing command.\n")
            else:
                sys.stderr.write(f"Command not supported. Valid commands are:\n{help_text}\n")
        else:
            sys.stderr.write(f"Error {err.errno} when trying to execute command.\n")
        return 3
    text = _text(reply)
    if text:
        sys.stdout.write(text + "\n")
    return 0


def _ask(xsh, args: bytes, failure: str) -> str:
    """One live-update step; its answer, or Failed(3) with the C tool's message."""
    try:
        return _text(xsh.control_command(b"live-update", args))
    except XsError as err:
        sys.stderr.write(f"{failure}:\n{err}\n")     # strerror(errno), as the C tool
        raise Failed(3) from None


def _live_update(xsh, args) -> int:
    binary = cmdline = None
    force = False
    timeout = LIVE_UPDATE_TIMEOUT
    i = 0
    while i < len(args):
        if args[i] == "-c":
            i += 1
            if i == len(args):
                sys.stderr.write("Missing command line value\n")
                return 2
            cmdline = args[i]
        elif args[i] == "-t":
            i += 1
            if i == len(args):
                sys.stderr.write("Missing timeout value\n")
                return 2
            timeout = _atoi(args[i])
        elif args[i] == "-F":
            force = True
        else:
            binary = args[i]
        i += 1
    try:
        if binary is not None:
            for words, failure in ((("-f", binary), "Setting update binary failed"),
                                   (("-c", cmdline), "Setting update command line failed")):
                if words[1] is None:
                    continue
                answer = _ask(xsh, _args(*words), failure)
                if answer != "OK":
                    sys.stderr.write(f"{failure}:\n{answer}\n")
                    return 3
        start = _args("-s", *(("-F",) if force else ()), "-t", str(timeout))
        began = time.monotonic()
        while True:
            answer = _ask(xsh, start, "Starting live update failed")
            if answer != "BUSY" or time.monotonic() - began >= timeout:
                break
            time.sleep(0.1)
    except Failed as failed:
        return failed.status
    if answer != "OK":
        sys.stderr.write(f"Starting live update failed:\n{answer}\n")
        return 3
    return 0


def _atoi(text: str) -> int:
    """C atoi: leading blanks, a sign, digits; anything else ends it (0 if none)."""
    text = text.lstrip()
    sign = -1 if text[:1] == "-" else 1
    text = text[1:] if text[:1] in "+-" else text
    digits = ""
    for ch in text:
        if not ch.isdigit():
            break
        digits += ch
    return sign * int(digits or "0")


def main(argv=None) -> int:
    from . import _script_argv, version_requested
    argv = _script_argv() if argv is None else list(argv)
    if version_requested(argv):
        return 0
    if len(argv) < 2:
        sys.stderr.write(f"Usage:\n{argv[0]} <command> [<arg>...]\n")
        return 2
    quiet_watchlib_logging()
    try:
        xsh = XsHandle.open()
    except XsError:
        sys.stderr.write("Failed to contact Xenstored.\n")
        return 1
    try:
        if argv[1] == "live-update":
            return _live_update(xsh, argv[2:])
        return _command(xsh, argv)
    finally:
        xsh.close()


if __name__ == "__main__":
    sys.exit(main())
