"""libxenstore's calling conventions over watchlib's connection, for the shims.

The xenstore tools report failures through ``errno`` as libxenstore sets it
(tools/libs/store/xs.c, Xen 4.17), so the same daemon answer must become the
same errno here, or ``xenstore-ls`` would print another strerror.  What this
layer adds to ``watchlib.connection.Connection``:

- opening: ``$XENSTORED_PATH`` (else ``$XENSTORED_RUNDIR/socket``, else
  /var/run/xenstored/socket: ``watchlib.sockets``); on failure the xenbus device is tried next, so
  the errno reported is the one of that last attempt;
- a request whose payload would pass 4096 bytes fails with E2BIG unsent;
- an error name the daemon sends that libxenstore does not know is EINVAL;
- DIRECTORY answered E2BIG is retried with DIRECTORY_PART, exactly as
  ``xs_directory`` pages it (ENOSYS there is E2BIG again);
- permissions come back as libxenstore re-prints them (``r%i`` after strtol);
- watches keep their own token and every event is handed out, unmerged.

It sits on ``Connection`` rather than ``Client`` because the tools need raw
watch events (their own token, the daemon's initial event, no coalescing):
the Client's subscriptions exist to hide exactly those.
"""
import errno
import logging
import os
import queue
import stat

from xenstore_protocol import Op, PAYLOAD_MAX, XenstoreError, join_fields, split_fields

from ..connection import Connection, Disconnected
from ..sockets import daemon_socket
from .cformat import c_strtol, c_strtoul

SUN_PATH_MAX = 108          # sizeof(sockaddr_un.sun_path) on Linux


class XsError(Exception):
    """A failed libxenstore call: ``errno`` as the C library would have set it."""

    def __init__(self, err: int):
        super().__init__(os.strerror(err))
        self.errno = err


def domain_dev() -> str:
    path = os.environ.get("XENSTORED_PATH")
    if path is not None:          # xs_domain_dev(): set, even empty, wins (getenv)
        return path
    if os.path.exists("/dev/xen/xenbus"):
        return "/dev/xen/xenbus"
    return "/proc/xen/xenbus"


def _errno_of(exc: XenstoreError) -> int:
    if exc.name == "EIO" and exc.detail.startswith("daemon sent unknown error"):
        return errno.EINVAL     # xs.c get_error(): unknown strings are EINVAL
    return exc.errno


class XsHandle:
    """One connection, used the way xenstore_client.c uses its ``xs_handle``.

    Paths and values are bytes; ``tx`` is a transaction id (0: none).
    Every failure raises ``XsError``.
    """

    def __init__(self):
        self._conn = None
        self._events = queue.Queue()

    @classmethod
    def open(cls) -> "XsHandle":
        """``xs_open(0)``: the daemon's socket, then the xenbus device."""
        last = errno.ENOENT
        for path in (daemon_socket(), domain_dev()):
            try:
                return cls._open_socket(path)
            except XsError as e:
                last = e.errno
        raise XsError(last)

    @classmethod
    def _open_socket(cls, path: str) -> "XsHandle":
        try:
            st = os.stat(path)
        except OSError as e:
            raise XsError(e.errno) from None
        if not stat.S_ISSOCK(st.st_mode):
            # A xenbus device: libxenstore would talk over it; watchlib only
            # speaks to sockets.  Report what opening it would report.
            try:
                os.close(os.open(path, os.O_RDWR | os.O_CLOEXEC))
            except OSError as e:
                raise XsError(e.errno) from None
            raise XsError(errno.ENOTSOCK)
        if len(os.fsencode(path)) >= SUN_PATH_MAX:
            raise XsError(errno.EINVAL)
        handle = cls()
        try:
            handle._conn = Connection(path, on_event=handle._on_event, on_lost=handle._on_lost,
                                      reconnect=False, name="xenstore-cli")
        except OSError as e:
            raise XsError(e.errno or errno.EINVAL) from None
        return handle

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    # -- the reader thread's callbacks ---------------------------------------

    def _on_event(self, path: str, token: str) -> None:
        self._events.put((path.encode("latin-1"), token.encode("latin-1")))

    def _on_lost(self) -> None:
        self._events.put(None)

    # -- requests ---------------------------------------------------------------

    def _talk(self, op: int, payload: bytes, tx: int = 0) -> bytes:
        if len(payload) > PAYLOAD_MAX:
            raise XsError(errno.E2BIG)
        answered = []
        try:
            reply = self._conn.request(op, payload, tx, hook=lambda p: answered.append(p.op))
        except XenstoreError as e:
            raise XsError(_errno_of(e)) from None
        except Disconnected:
            raise XsError(errno.EBADF) from None   # read_all() on a closed socket
        if answered and answered[0] != op:
            # A reply of another type: libxenstore gives up on the connection.
            self._conn.close()
            raise XsError(errno.EBADF)
        return reply

    def read(self, path: bytes, tx: int = 0) -> bytes:
        return self._talk(Op.READ, path + b"\0", tx)

    def write(self, path: bytes, value: bytes, tx: int = 0) -> None:
        self._talk(Op.WRITE, path + b"\0" + value, tx)

    def rm(self, path: bytes, tx: int = 0) -> None:
        self._talk(Op.RM, path + b"\0", tx)

    def directory(self, path: bytes, tx: int = 0) -> list:
        try:
            return split_fields(self._talk(Op.DIRECTORY, path + b"\0", tx))
        except XsError as e:
            if e.errno != errno.E2BIG:
                raise
        return self._directory_part(path, tx)

    def _directory_part(self, path: bytes, tx: int) -> list:
        # Chunks are "<generation>\0" + names from byte `offset` + a final NUL;
        # the list is complete when it ends in two NULs.  Another generation
        # means the directory changed: start again (xs.c xs_directory_part).
        strings = bytearray()
        generation = None
        while True:
            try:
                reply = self._talk(Op.DIRECTORY_PART,
                                   join_fields(path, b"%d" % len(strings)), tx)
            except XsError as e:
                raise XsError(errno.E2BIG if e.errno == errno.ENOSYS else e.errno) from None
            this_gen, _, data = reply.partition(b"\0")
            if not strings:
                generation = this_gen
            elif this_gen != generation:
                strings = bytearray()
                continue
            strings += data
            if len(strings) <= 1 or strings[-2] == 0:
                break
        if len(strings) > 1:
            del strings[-1]
        return split_fields(bytes(strings))

    def get_perms(self, path: bytes, tx: int = 0) -> list:
        """``[b"n0", b"r1"]`` as xs_get_permissions + xs_perm_to_string give them."""
        reply = self._talk(Op.GET_PERMS, path + b"\0", tx)
        count = reply.count(b"\0")
        out = []
        for field in reply.split(b"\0")[:count]:
            kind, digits = field[:1], field[1:].decode("latin-1")
            if kind not in (b"r", b"w", b"b", b"n"):
                raise XsError(errno.EINVAL)
            value, end = c_strtol(digits, 0)
            if not digits or end != len(digits):
                raise XsError(errno.EINVAL)
            domid = value & 0xFFFFFFFF
            if domid & 0x80000000:
                domid -= 1 << 32
            out.append(kind + b"%d" % domid)
        return out

    def set_perms(self, path: bytes, perms: list, tx: int = 0) -> None:
        self._talk(Op.SET_PERMS, path + b"\0" + b"".join(p + b"\0" for p in perms), tx)

    def watch(self, path: bytes, token: bytes) -> None:
        self._talk(Op.WATCH, join_fields(path, token))

    def read_watch(self):
        """The next ``(path, token)`` event; None once the connection is gone."""
        return self._events.get()

    def transaction_start(self) -> int:
        reply = self._talk(Op.TRANSACTION_START, b"\0")
        return c_strtoul(reply.split(b"\0", 1)[0].decode("latin-1"), 0)

    def transaction_end(self, tx: int, abort: bool) -> None:
        self._talk(Op.TRANSACTION_END, b"F\0" if abort else b"T\0", tx)

    def control_command(self, command: bytes, data: bytes = b"") -> bytes:
        """``xs_control_command``: CONTROL ``command\0`` + ``data`` (NUL-terminated args)."""
        return self._talk(Op.CONTROL, command + b"\0" + data)


def quiet_watchlib_logging() -> None:
    """The connection logs a lost daemon as a warning; the tools say nothing of it."""
    logger = logging.getLogger("watchlib")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
