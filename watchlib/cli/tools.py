"""The xenstore-* tools: what each mode does, prints and exits with.

One function per mode, behaving as Xen 4.17's xenstore_client.c (Debian's
xenstore-utils) does when run against the same daemon: the same requests in
the same order and transactions, hence the same answers, the same bytes on
stdout and stderr and the same exit status.  The observable facts are
written down in docs/cli.md; tests/cli/test_differential.py holds them to it.

Two channels for stdout, as in the C tool: ``read`` and ``list`` collect
their output and print it only once the transaction has ended (an error exit
before that prints none of it), while ``ls`` and ``watch`` print as they go
(``ls`` through stdio's buffer: at exit, or line by line on a terminal).

Extras (not in xenstore-utils, long options that must be spelled out):
``--json`` for read, list, ls and watch; ``--value`` for watch.
"""
import base64
import errno
import json
import os
import sys

from .args import die_of_sigpipe
from .cformat import c_atoi, sanitise, unsanitise
from .gnu_getopt import LongOpt, Parser
from .xs import XsError, XsHandle, quiet_watchlib_logging

MODES = ("chmod", "exists", "list", "ls", "read", "rm", "write", "watch")

# What follows the program name (and the mode word, in the multi-call form).
USAGE = {
    "read": "[-h] [-p] [-s] [-R] key [...]",
    "write": "[-h] [-s] [-R] key value [...]",
    "rm": "[-h] [-s] [-t] key [...]",
    "exists": "[-h] [-p] [-s] key [...]",
    "list": "[-h] [-p] [-s] key [...]",
    "ls": "[-h] [-f] [-p] [-s] [path]",
    "chmod": "[-h] [-u] [-r] [-s] key <mode [modes...]>",
    "watch": "[-h] [-n NR] key",
}

SHORTOPTS = "hfspturn:R"
# Shared by every mode, as in the C tool: an option of another mode is
# recognised, then refused with the usage text.
LONGOPTS = (
    LongOpt("help", False, "h"),
    LongOpt("flat", False, "f"),
    LongOpt("prefix", False, "p"),
    LongOpt("tidy", False, "t"),
    LongOpt("upto", False, "u"),
    LongOpt("recurse", False, "r"),
    LongOpt("number", True, "n"),
    LongOpt("raw", False, "R"),
)
# Which mode accepts which option ('s' is accepted, and ignored, by all).
ALLOWED = {
    "f": ("ls",), "p": ("read", "list", "ls"), "t": ("rm",), "u": ("chmod",),
    "r": ("chmod",), "n": ("watch",), "R": ("read", "write"),
}
OPTION_NAMES = {"f": "flat", "p": "prefix", "t": "tidy", "u": "upto", "r": "recurse", "R": "raw"}
EXTENSIONS = {
    "read": (LongOpt("json", False, "json"),),
    "list": (LongOpt("json", False, "json"),),
    "ls": (LongOpt("json", False, "json"),),
    "watch": (LongOpt("json", False, "json"), LongOpt("value", False, "value")),
}

TAG_LEN = len(' = "..."')               # what xenstore-ls keeps free for the value
STRING_MAX = 3072 + 1024                # XENSTORE_ABS_PATH_MAX + 1024: its path buffer
CHMOD_PATH_MAX = 256                    # -r builds child paths in a 256-byte buffer
PERMS_COLUMN = 60                       # ls -p pads the value column up to here


class Exit(Exception):
    """Leave with this status (after the stdout written so far is flushed)."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


def _json_value(value):
    """A value for JSON: a string when it is UTF-8 text, else ``{"base64": ...}``."""
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(value).decode("ascii")}


def _json_key(path: bytes) -> str:
    return path.decode("utf-8", "surrogateescape")


class Tool:
    """One run of one mode.  ``argv`` as the C tool's ``main`` gets it."""

    def __init__(self, argv, mode=None, stdout=None, stderr=None):
        self.argv = [os.fsdecode(a) for a in argv] if argv else ["xenstore"]
        self.stdout = stdout if stdout is not None else sys.stdout.buffer
        self.stderr = stderr if stderr is not None else sys.stderr.buffer
        base = self.argv[0].rsplit("/", 1)[-1]
        self.name = base                  # glibc's program_invocation_short_name
        self.mode = mode
        self.switch_argv = 0              # 1: multi-call form, the mode word is argv[1]
        self.direct = bytearray()         # printed as it comes (ls, watch)
        self.buffered = bytearray()       # printed after the transaction (read, list)
        self.json_result = None
        try:
            self.line_buffered = self.stdout.isatty()
        except (OSError, ValueError, AttributeError):
            self.line_buffered = False
        self.opts = {}
        self.max_width = 80
        self.xs = None

    # -- messages ----------------------------------------------------------------

    def _stderr(self, text) -> None:
        # stderr is unbuffered in C, stdout fully buffered unless it is a
        # terminal: into one file, a complaint comes before the output.
        data = os.fsencode(text) if isinstance(text, str) else text
        if self.line_buffered:
            self._flush_direct()
        self.stderr.write(data)
        self.stderr.flush()

    def warnx(self, message) -> None:
        self._stderr(os.fsencode(self.name) + b": " + _b(message) + b"\n")

    def warn(self, message, err: int) -> None:
        self._stderr(os.fsencode(self.name) + b": " + _b(message) + b": "
                     + os.strerror(err).encode() + b"\n")

    def errx(self, message, status: int = 1):
        self.warnx(message)
        raise Exit(status)

    def err(self, message, err: int, status: int = 1):
        self.warn(message, err)
        raise Exit(status)

    def usage(self):
        mode = self.mode
        if mode is None:
            self.errx(f"Usage: {self.argv[0]} <mode> [-h] [...]")
        word = f"{mode} " if self.switch_argv else ""
        self.errx(f"Usage: {self.argv[0]} {word}{USAGE[mode]}")

    # -- stdout --------------------------------------------------------------------

    def _flush_direct(self) -> None:
        if self.direct:
            data = bytes(self.direct)
            del self.direct[:]          # in place: _ls holds a reference
            self._write_stdout(data)

    def _write_stdout(self, data: bytes) -> None:
        try:
            self.stdout.write(data)
            self.stdout.flush()
        except BrokenPipeError:
            die_of_sigpipe()            # as the C tool does
            raise Exit(141)

    # -- the run ---------------------------------------------------------------------

    def run(self) -> int:
        try:
            return self._run()
        except Exit as e:
            return e.status
        finally:
            try:
                self._flush_direct()
            finally:
                if self.xs is not None:
                    self.xs.close()

    def _run(self) -> int:
        self._choose_mode()
        operands = self._parse_options()
        mode = self.mode
        if mode == "write" and len(operands) % 2 == 1:
            self.usage()
        if mode != "ls" and not operands:
            self.usage()
        if mode == "read":
            transaction = len(operands) > 1
        elif mode == "write":
            transaction = len(operands) > 2
        else:
            transaction = mode not in ("ls", "watch")
        if mode == "ls":
            self.max_width = self._ls_width()

        quiet_watchlib_logging()
        try:
            self.xs = XsHandle.open()
        except XsError as e:
            self.err("xs_open", e.errno)

        while True:
            tx = 0
            if transaction:
                try:
                    tx = self.xs.transaction_start()
                except XsError:
                    tx = 0
                if tx == 0:
                    self.errx("couldn't start transaction")
            ret = getattr(self, "do_" + mode)(operands, tx)
            if transaction:
                try:
                    self.xs.transaction_end(tx, ret != 0)
                except XsError as e:
                    if ret == 0 and e.errno == errno.EAGAIN:
                        self.buffered = bytearray()       # start over, output too
                        continue
                    self.errx("couldn't end transaction")
            break
        if self.opts["json"] and mode in ("read", "list"):
            # All or nothing: half a JSON document helps no script.
            self.buffered = bytearray()
            if ret == 0:
                self.buffered += json.dumps(self.json_result).encode() + b"\n"
        if self.buffered:
            self._write_stdout(bytes(self.buffered))
        return ret

    def _choose_mode(self) -> None:
        """As the C tool: ``xenstore-<mode>`` by name, else the first argument."""
        if self.mode is not None:
            return
        if self.name.startswith("xenstore-"):
            command = self.name[len("xenstore-"):]
        elif len(self.argv) < 2:
            self.usage()
        else:
            command = self.argv[1]
            self.switch_argv = 1
        if command not in MODES:
            self.errx(f"unknown mode {command}\n")
        self.mode = command

    def _parse_options(self) -> list:
        """Fill ``self.opts``; the operands, as bytes.  Exits on -h or a misplaced option."""
        mode = self.mode
        opts = self.opts = {"prefix": False, "tidy": False, "upto": False, "recurse": False,
                            "flat": False, "raw": False, "number": -1, "json": False,
                            "value": False}
        # In the multi-call form getopt sees the vector from the mode word on,
        # so its complaints start "read: ".
        parser = Parser(self.argv[self.switch_argv:], SHORTOPTS, LONGOPTS, self._stderr,
                        extensions=EXTENSIONS.get(mode, ()),
                        posixly_correct="POSIXLY_CORRECT" in os.environ)
        for key, optarg in parser:
            if key == "h":
                self.usage()
            elif key in ("json", "value"):
                opts[key] = True
            elif key in ALLOWED:
                if mode not in ALLOWED[key]:
                    self.usage()
                if key == "n":
                    opts["number"] = c_atoi(optarg)
                else:
                    opts[OPTION_NAMES[key]] = True
            # 's', and '?' (getopt has complained already), change nothing
        return [os.fsencode(a) for a in parser.operands]

    def _ls_width(self) -> int:
        """80, or INT_MAX/2 with -f; on a terminal its width minus 2, even with -f."""
        width = (2 ** 31 - 1) // 2 if self.opts["flat"] else 80
        try:
            width = os.get_terminal_size(self.stdout.fileno()).columns - 2
        except (OSError, ValueError, AttributeError):
            pass
        return width

    # -- modes -------------------------------------------------------------------------

    def do_read(self, keys, tx) -> int:
        result = {}
        self.json_result = result
        for key in keys:
            try:
                value = self.xs.read(key, tx)
            except XsError:
                self.warnx(b"couldn't read path " + key)
                return 1
            result[_json_key(key)] = _json_value(value)
            if self.opts["prefix"]:
                self.buffered += key + b": "
            if self.opts["raw"]:
                self.buffered += value
            else:
                self.buffered += sanitise(value) + b"\n"
        return 0

    def do_write(self, args, tx) -> int:
        for key, spec in zip(args[::2], args[1::2]):
            value = spec if self.opts["raw"] else unsanitise(spec)
            try:
                self.xs.write(key, value, tx)
            except XsError:
                self.warnx(b"could not write path " + key)
                return 1
        return 0

    def _rm(self, path, tx) -> bool:
        try:
            self.xs.rm(path, tx)
        except XsError:
            self.warnx(b"could not remove path " + path)
            return False
        return True

    def do_rm(self, keys, tx) -> int:
        for path in keys:
            if not self._rm(path, tx):
                return 1
            if not self.opts["tidy"]:
                continue
            # -t: then remove each parent that is now empty and has no value.
            while True:
                cut = path.rfind(b"/")
                if cut < 0:
                    break
                path = path[:cut]
                try:
                    value = self.xs.read(path, tx)
                    if value or self.xs.directory(path, tx):
                        break
                except XsError:
                    break
                if not self._rm(path, tx):
                    return 1
        return 0

    def do_exists(self, keys, tx) -> int:
        for key in keys:
            try:
                self.xs.read(key, tx)
            except XsError:
                return 1
        return 0

    def do_list(self, keys, tx) -> int:
        result = {}
        self.json_result = result
        for key in keys:
            try:
                names = self.xs.directory(key, tx)
            except XsError:
                self.warnx(b"could not list path " + key)
                return 1
            result[_json_key(key)] = [_json_key(n) for n in names]
            for name in names:
                if self.opts["prefix"]:
                    self.buffered += key + b"/"
                self.buffered += name + b"\n"
        return 0

    def do_ls(self, paths, tx) -> int:
        if self.opts["json"]:
            result = {}
            for path in paths or [b"/"]:
                self._ls_json(path, 0, result)
            self.direct += json.dumps(result).encode() + b"\n"
            return 0
        for path in paths or [b"/"]:
            self._ls(path, 0)
        return 0

    def _ls_children(self, path, depth):
        try:
            names = self.xs.directory(path)
        except XsError as e:
            if depth and e.errno == errno.ENOENT:
                return None         # vanished while we walked: move on silently
            self.err(b"xs_directory (" + path + b")", e.errno)
        return names

    @staticmethod
    def _child_path(path, name):
        full = path + (b"" if path.endswith(b"/") else b"/") + name
        # snprintf into a STRING_MAX buffer; a cut path is not read.
        return full[:STRING_MAX - 1], len(full) < STRING_MAX

    def _ls(self, path, depth) -> None:
        names = self._ls_children(path, depth)
        if names is None:
            return
        max_width = self.max_width
        flat = self.opts["flat"]
        show_perms = self.opts["prefix"]
        desired_width = 0 if flat else PERMS_COLUMN
        out = self.direct
        for name in names:
            newpath, whole = self._child_path(path, name)
            linewid = 0
            if flat:
                out += newpath
            else:
                shown = _precision(name, max_width - TAG_LEN - depth)
                out += b" " * depth + shown
                linewid = depth + len(shown)
            value = None
            if whole:
                try:
                    value = self.xs.read(newpath)
                except XsError:
                    value = None
            if value is None:
                out += b":\n"
            else:
                text = sanitise(value)
                # C compares as size_t: a negative width never cuts.
                if 0 <= max_width < linewid + len(value) + TAG_LEN:
                    out += b' = "' + _precision(text, max_width - TAG_LEN - linewid) + b'\\..."'
                else:
                    piece = b' = "' + text + b'"'
                    out += piece
                    linewid += len(piece)
                    if show_perms:
                        out += b" "
                        linewid += 1
                        while linewid < min(desired_width, max_width):
                            out += b"." if linewid & 1 else b" "
                            linewid += 1
            if show_perms:
                try:
                    perms = self.xs.get_perms(newpath)
                except XsError as e:
                    self.warn(b"\ncould not access permissions for " + name, e.errno)
                else:
                    out += b"  (" + b",".join(perms) + b")"
            out += b"\n"
            if self.line_buffered:
                self._flush_direct()
            self._ls(newpath, depth + 1)

    def _ls_json(self, path, depth, result) -> None:
        names = self._ls_children(path, depth)
        if names is None:
            return
        for name in names:
            newpath, whole = self._child_path(path, name)
            try:
                value = self.xs.read(newpath) if whole else None
            except XsError:
                value = None
            entry = {"value": _json_value(value)}
            if self.opts["prefix"]:
                try:
                    entry["perms"] = [p.decode("ascii") for p in self.xs.get_perms(newpath)]
                except XsError:
                    entry["perms"] = None
            result[_json_key(newpath)] = entry
            self._ls_json(newpath, depth + 1, result)

    def do_chmod(self, args, tx) -> int:
        path, specs = args[0], args[1:]
        perms = []
        for spec in specs:
            kind = spec[:1] or b"\0"
            if kind not in (b"n", b"r", b"w", b"b"):
                self.errx(b"Invalid permission specification: '" + kind + b"'")
            perms.append(kind + b"%d" % c_atoi(os.fsdecode(spec[1:])))
        self._chmod(path, perms, self.opts["upto"], self.opts["recurse"], tx)
        return 0

    def _chmod(self, path, perms, upto, recurse, tx) -> None:
        if not path:
            return
        try:
            self.xs.set_perms(path, perms, tx)
        except XsError as e:
            self.err(b"Error occurred setting permissions on '" + path + b"'", e.errno)
        if upto:
            cut = path.rfind(b"/")
            if cut < 0:
                self.errx(b"Unable to locate path separator '/' in '" + path + b"'")
            self._chmod(path[:cut], perms, True, False, tx)
        if recurse:
            try:
                names = self.xs.directory(path, tx)
            except XsError:
                names = []
            for name in names:
                child = (path + b"/" + name)[:CHMOD_PATH_MAX - 1]
                self._chmod(child, perms, False, True, tx)

    def do_watch(self, keys, tx) -> int:
        for key in keys:
            try:
                self.xs.watch(key, key)
            except XsError:
                self.errx(b"Unable to add watch on " + key + b"\n")
        limit = self.opts["number"]
        count = 0
        while limit == -1 or count < limit:
            count += 1
            event = self.xs.read_watch()
            if event is None:
                # Connection gone.  The C tool then spins on a failing read
                # until -n events are counted (forever without -n).
                if limit == -1:
                    self.errx("lost the connection to xenstored")
                return 0
            path = event[0]
            value = None
            if self.opts["value"] and not path.startswith(b"@"):
                try:
                    value = self.xs.read(path)
                except XsError:
                    value = None
            if self.opts["json"]:
                line = {"path": _json_key(path)}
                if self.opts["value"]:
                    line["value"] = _json_value(value)
                data = json.dumps(line).encode() + b"\n"
            elif value is not None:
                data = path + b' = "' + sanitise(value) + b'"\n'
            else:
                data = path + b"\n"
            self._write_stdout(data)
        return 0


def _b(message) -> bytes:
    return os.fsencode(message) if isinstance(message, str) else bytes(message)


def _precision(data: bytes, precision: int) -> bytes:
    """printf ``%.*s``: a negative precision means no limit."""
    return data if precision < 0 else data[:precision]
