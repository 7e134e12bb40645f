"""Socket clients' batches read, answered and written in C (poller.h).

    from xsd._native.poller import Poller, BYTES, RUN, UNSENT, CLOSED
    poller = Poller(engine, store_handle)           # borrows both
    loop.add_reader(poller.fd, on_ready)             # readable: some socket is
    pconn = poller.add(conn, sock.fileno(), ident)   # conn: engine.Conn; reading on
    pconn.direct(True, epoch)                        # nothing of this client waits in Python
    kind, ident, data, extra = poller.serve(True)    # until kind == NONE: serve(False)

``serve`` answers and writes each ready connection's batch itself while its
pconn is direct and the run needs nothing else (poller.h), and returns at the
first connection Python must see: BYTES (``data``: what was read, for the
transport's path), RUN (``data`` and ``extra``: ``Engine.answer``'s tuple of
the run made on it), UNSENT (``extra``: replies the socket did not take) or
CLOSED (``extra``: the errno, 0 at end of file).  Journaling, replies that must
wait for the commit wait in C: ``serve`` says COMMIT once they do, and
``release`` sends them after it.  Not thread-safe.
"""
import errno
import os

from . import trie as _checked  # noqa: F401  (the build stamp is checked at its import)
from ._xsd_native import ffi, lib

__all__ = ["Poller", "PConn", "NONE", "BYTES", "RUN", "UNSENT", "CLOSED", "COMMIT"]

NONE = lib.XSD_POLL_NONE
BYTES = lib.XSD_POLL_BYTES
RUN = lib.XSD_POLL_RUN
UNSENT = lib.XSD_POLL_UNSENT
CLOSED = lib.XSD_POLL_CLOSED
COMMIT = lib.XSD_POLL_COMMIT
_RELEASED_MAX = 64
_SAMPLES = lib.XSD_POLL_SAMPLES

_NULL = ffi.NULL
_serve = lib.xsd_poller_serve
_unpack = ffi.unpack
# Read per connection per turn: about uvloop's own read size (256,000), so a batch is what
# data_received would have been given.
_IN_CAP = 256 * 1024


def _oserror(what: str) -> OSError:
    err = ffi.errno
    if err == errno.ENOMEM:
        return MemoryError("xsd._native: out of memory")
    return OSError(err, "%s: %s" % (what, os.strerror(err)))


class PConn:
    """One socket's registration (xsd_pconn); freed by ``close`` or with the object."""

    __slots__ = ("_h", "_poller", "_conn")

    def __init__(self, poller, conn, fd: int, ident: int):
        h = lib.xsd_pconn_new(poller._h, conn._h, fd, ident)
        if h == _NULL:
            raise _oserror("registering socket %d" % fd)
        self._h = ffi.gc(h, lib.xsd_pconn_free)
        self._poller = poller       # both borrowed by C: kept alive with it
        self._conn = conn

    def reading(self, on: bool) -> None:
        if lib.xsd_pconn_reading(self._h, bool(on)):
            raise _oserror("epoll_ctl")

    def watcher(self, session, events: bool) -> None:
        """Its session's handle in the watch registry (None: none) and whether the poller may
        write it the events others' direct batches fire (poller.h xsd_pconn_watcher)."""
        if lib.xsd_pconn_watcher(self._h, -1 if session is None else session, bool(events)):
            raise MemoryError("xsd._native: out of memory")

    def direct(self, on: bool, epoch: int) -> None:
        lib.xsd_pconn_direct(self._h, bool(on), epoch)

    def close(self) -> None:
        """Unregister now (its held bytes dropped); later calls do nothing."""
        h = self._h
        if h is not None:
            self._h = None
            ffi.release(h)


class Poller:
    """xsd_poller over an ``engine.Engine`` and the store handle it runs on."""

    __slots__ = ("_h", "_engine", "_store", "_res", "fd", "_out", "_cap", "_run", "_released",
                 "_samples")

    def __init__(self, engine, store_handle, in_cap: int = _IN_CAP):
        h = lib.xsd_poller_new(engine._h, store_handle, in_cap)
        if h == _NULL:
            raise _oserror("epoll_create1")
        self._h = ffi.gc(h, lib.xsd_poller_free)
        self._engine = engine           # borrowed by C, and its run buffers are ours
        self._store = store_handle
        self._res = ffi.new("struct xsd_poll *")
        self._out, self._cap, self._run = engine._out, engine._cap, engine._run_result
        self.fd = lib.xsd_poller_fd(h)
        self._released = ffi.new("struct xsd_released[]", _RELEASED_MAX)
        self._samples = ffi.new("struct xsd_poll_sample[]", _SAMPLES)

    def add(self, conn, fd: int, ident: int) -> PConn:
        return PConn(self, conn, fd, ident)

    def sample(self, every: int, countdown: int) -> None:
        """Time one request in ``every`` the poller's runs answer (0: none; poller.h), the
        next after ``countdown`` more."""
        lib.xsd_poller_sample(self._h, every, countdown)

    def countdown(self) -> int:
        """Requests until the next one timed, as the poller's runs left it."""
        return lib.xsd_poller_countdown(self._h)

    def samples(self):
        """-> ``[(request type, seconds)]`` timed since the last call, oldest first."""
        taken, out = [], self._samples
        while True:
            n = lib.xsd_poller_samples(self._h, out, _SAMPLES)
            taken.extend((out[i].op, out[i].ns * 1e-9) for i in range(n))
            if n < _SAMPLES:
                return taken

    def epoch(self, epoch: int) -> None:
        lib.xsd_poller_epoch(self._h, epoch)

    def journaling(self, on: bool) -> None:
        lib.xsd_poller_journaling(self._h, bool(on))

    def direct_batches(self) -> int:
        return lib.xsd_poller_direct_batches(self._h)

    def release(self):
        """After the journal's commit: every waiting connection's replies sent; -> ``[(ident,
        journaled payload bytes, the replies its socket did not take)]``."""
        items, released = self._released, []
        while True:
            n = lib.xsd_poller_release(self._h, items, _RELEASED_MAX)
            for i in range(n):
                item = items[i]
                released.append((item.id, item.journaled,
                                  _unpack(item.rest, item.rest_len) if item.rest_len else b""))
            if n < _RELEASED_MAX:
                return released

    def serve(self, poll: bool):
        """-> ``(kind, ident, data, extra, held, last)`` (the module's docstring), ``held``
        True when that connection's replies wait for the commit, ``last`` when nothing more
        is ready this turn (no need to call again); ``(NONE, 0, None, None, False, True)``
        once every connection ready this turn is served."""
        res = self._res
        kind = _serve(self._h, poll, self._out, self._cap, self._run, res)
        if kind == NONE:
            return kind, 0, None, None, False, True
        if kind == COMMIT:      # extra: how many connections' replies wait for it
            return kind, 0, None, res.waiting, False, True
        held, last = bool(res.held), bool(res.last)
        if kind == BYTES:
            return kind, res.id, _unpack(res.data, res.data_len), None, held, last
        if kind == RUN:
            return (kind, res.id, _unpack(res.data, res.data_len), self._engine.last_answer(),
                    held, last)
        if kind == UNSENT:
            return kind, res.id, None, _unpack(self._out + res.sent,
                                                self._run.out_len - res.sent), held, last
        return kind, res.id, None, res.err, held, last
