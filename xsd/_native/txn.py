"""One transaction's overlay in C (txn.h), over a ``NodeStore``'s handle.

    from xsd._native.txn import NativeTxn
    t = NativeTxn(store.handle)          # borrows the store: keep it alive
    t.get(b"/a")                         # -> (value, perms bytes, gen) or None
    t.set_value(b"/a", b"v"); t.note_change(b"/a", b"n0\\0", None)
    t.commit()                           # -> True, or False on a conflict (EAGAIN)
    t.events()                           # -> the merged events' records (txn.h)

Paths and permissions cross as bytes (``b"n0\\0r5\\0"``); every return code is
checked here: a refusal the core turns into a xenstore error comes back as
``TxnRefused(errno name)``; ENOMEM is MemoryError; anything else (the caller
broke the contract, or the transaction read nodes at different times and its
view lists a child it does not have: EIO) is RuntimeError.  Like the rest of
``xsd._native`` this module imports nothing from xsd.
"""
import errno
import os

from . import trie as _checked  # noqa: F401  (the build stamp is checked at its import)
from ._xsd_native import ffi, lib

__all__ = ["NativeTxn", "TxnRefused"]

_NULL = ffi.NULL
_BUF_START = 4096
# One node view and one reply buffer for every overlay: each call fills and unpacks them
# before it returns, and calls run one at a time (the event loop's thread; C never calls
# back), so a transaction costs no buffers of its own (the engine starts one per
# TRANSACTION_START it answers).
_VIEW = ffi.new("struct xsd_node_view *")
_BUF = ffi.new("char[]", _BUF_START)


class TxnRefused(Exception):
    """A refusal: ``args[0]`` is the errno name (ENOSPC: transaction-nodes)."""


def _fail(rc: int, what):
    code = -rc
    if code == errno.ENOMEM:
        raise MemoryError("xsd._native: out of memory")
    if code == errno.ENOSPC:
        raise TxnRefused("ENOSPC")
    raise RuntimeError("xsd_txn: %s: %r" % (os.strerror(code), what))


class NativeTxn:
    """The C overlay of one transaction (``xsd_txn``), owned through ``ffi.gc``."""

    __slots__ = ("_h", "_view", "_buf", "_cap", "_store_h")

    def __init__(self, store_handle):
        h = lib.xsd_txn_new(store_handle)
        if h == _NULL:
            raise MemoryError("xsd._native: out of memory")
        self._h = ffi.gc(h, lib.xsd_txn_free)
        self._store_h = store_handle        # borrowed by C: kept alive with us
        self._view = _VIEW
        self._buf = _BUF
        self._cap = _BUF_START

    @classmethod
    def adopt(cls, handle, store_handle) -> "NativeTxn":
        """Own ``handle``, an ``xsd_txn *`` made over ``store_handle`` elsewhere (the
        engine's TRANSACTION_START, engine.h)."""
        self = cls.__new__(cls)
        self._store_h = store_handle
        self._view = _VIEW
        self._buf = _BUF
        self._cap = _BUF_START
        self._h = ffi.gc(handle, lib.xsd_txn_free)     # last: owned only once adopted
        return self

    @property
    def handle(self):
        """The ``xsd_txn *`` (cdata), for xsd._native.engine only: it stays owned here."""
        return self._h

    def set_limit(self, limit: int) -> None:
        lib.xsd_txn_set_limit(self._h, limit)

    def doom(self) -> None:
        lib.xsd_txn_doom(self._h)

    def seen(self) -> int:
        return lib.xsd_txn_seen(self._h)

    def get(self, path: bytes):
        """``(value, perms, gen)`` as the transaction sees path, or None (absent)."""
        view = self._view
        rc = lib.xsd_txn_get(self._h, path, len(path), view)
        if rc == 1:
            return (ffi.unpack(view.value, view.value_len) if view.value_len else b"",
                    ffi.unpack(view.perms, view.perms_len), view.gen)
        if rc == 0:
            return None
        _fail(rc, path)

    def _listing(self, fn, key) -> bytes:
        buf, cap = self._buf, self._cap
        while True:
            n = fn(self._h, key, len(key), buf, cap) if key is not None else fn(self._h, buf, cap)
            if n < 0:
                _fail(n, key)
            if n <= cap:
                return ffi.unpack(buf, n)
            cap = max(n, 2 * cap)
            buf = ffi.new("char[]", cap)

    def children(self, path: bytes):
        """``b"a\\0b\\0"``, or None when path is absent in the view."""
        h = self._h
        n = lib.xsd_txn_children(h, path, len(path), self._buf, self._cap)
        if n == -errno.ENOENT:
            return None
        if 0 <= n <= self._cap:
            return ffi.unpack(self._buf, n)
        return self._listing(lib.xsd_txn_children, path)

    def create(self, path: bytes, count: int, value: bytes, perms: bytes) -> None:
        rc = lib.xsd_txn_create(self._h, path, len(path), count, value, len(value),
                                perms, len(perms))
        if rc:
            _fail(rc, path)

    def remove(self, path: bytes) -> bytes:
        """Remove path's subtree from the view; its records ``"<path>\\0<perms>\\0"``."""
        n = lib.xsd_txn_remove(self._h, path, len(path))
        if n < 0:
            _fail(n, path)
        return self._listing(lib.xsd_txn_removed, None)

    def set_perms(self, path: bytes, perms: bytes) -> None:
        rc = lib.xsd_txn_set_perms(self._h, path, len(path), perms, len(perms))
        if rc:
            _fail(rc, path)

    def set_value(self, path: bytes, value: bytes) -> None:
        rc = lib.xsd_txn_set_value(self._h, path, len(path), value, len(value))
        if rc:
            _fail(rc, path)

    def owned_delta(self, domid: int) -> int:
        return lib.xsd_txn_owned_delta(self._h, domid)

    def note_change(self, path: bytes, perms: bytes, old) -> None:
        rc = lib.xsd_txn_note_change(self._h, path, len(path), perms, len(perms),
                                     _NULL if old is None else old,
                                     0 if old is None else len(old))
        if rc:
            _fail(rc, path)

    def note_remove(self, root: bytes, records: bytes) -> None:
        rc = lib.xsd_txn_note_remove(self._h, root, len(root), records, len(records))
        if rc:
            _fail(rc, root)

    def commit(self) -> bool:
        """Applied (True), or a conflict (False: nothing changed)."""
        rc = lib.xsd_txn_commit(self._h)
        if rc == -errno.EAGAIN:
            return False
        if rc:
            _fail(rc, "commit")
        return True

    def events(self) -> bytes:
        return self._listing(lib.xsd_txn_events, None)
