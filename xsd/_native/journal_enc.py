"""The journal's record of a batch built in C (journal_enc.h), from the C store's change log.

    from xsd._native.journal_enc import RecordEncoder
    encoder = RecordEncoder(node_store)        # borrows the store's handle
    record = encoder.record(seq, tail)         # a buffer, or None: nothing to record

One crossing per batch: the change log is read, every changed node encoded,
the record framed (length, CRC) and the log emptied in C.  ``record`` hands
back a buffer over the encoder's own memory, valid until its next call: the
caller writes it before asking for another.  The format and its Python
encoder (the oracle, and the Python store's encoder) are
xsd/durability/journal.py's.

One C handle, owned here through ``ffi.gc``; the store's owner is kept alive
with it.  Not thread-safe: the event loop's thread only.
"""
import errno
import os

from . import trie as _checked  # noqa: F401  (the build stamp is checked at its import)
from ._xsd_native import ffi, lib

__all__ = ["RecordEncoder"]

_record = lib.xsd_journal_record
_data = lib.xsd_journal_data
_buffer = ffi.buffer


class RecordEncoder:
    __slots__ = ("_h", "_store", "_store_h")

    def __init__(self, store):
        h = lib.xsd_journal_new()
        if h == ffi.NULL:
            raise MemoryError("xsd._native: out of memory")
        self._h = ffi.gc(h, lib.xsd_journal_free)
        self._store = store             # the handle below stays owned by it
        self._store_h = store.handle

    def record(self, seq: int, tail: bytes = b""):
        """Record ``seq``: the store's changes (the log is emptied), then ``tail`` (entries
        encoded by the caller), framed; None when there are neither."""
        n = _record(self._h, self._store_h, seq, tail, len(tail))
        if n > 0:
            return _buffer(_data(self._h), n)
        if n == 0:
            return None
        code = -n
        if code == errno.ENOMEM:
            raise MemoryError("xsd._native: out of memory")
        if code == errno.E2BIG:
            raise ValueError("journal record: a path or the record too long for its field")
        raise OSError(code, "journal record: " + os.strerror(code))

    @property
    def orders(self) -> int:
        """ORDER entries in the last record (parents whose new children were not their last)."""
        return lib.xsd_journal_orders(self._h)
