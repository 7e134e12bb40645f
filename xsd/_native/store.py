"""The node store in C (store.h), behind the interface of ``xsd.nodestore.PyNodeStore``.

    from xsd._native.store import NodeStore
    s = NodeStore()
    s.write("/local/domain/1/name", b"vm1", (Perm("n", 0),))   # -> 4 nodes created
    s.get("/local/domain/1/name").value                          # -> b"vm1"

One C handle, owned by this object through ``ffi.gc``; every return code is
checked here and nowhere else.  Nodes live in C, one block each (no Python
object per node); ``get`` builds a ``NodeView`` copy on demand.  Permissions
cross as the wire encodes them (``b"n0\\0r5\\0"``): given as pairs
``(kind, domid)`` (``xenstore_protocol.perms.Perm`` is one), given back as
plain tuples, which compare equal to ``Perm``; decoded lists are cached by
their bytes.  Like the rest of ``xsd._native`` this module imports nothing
from xsd or xenstore_protocol; ``xsd/nodestore.py`` picks the backend.  Importing this module checks the build stamp (xsd._native.trie),
so a stale extension is never used.

Not wired into the daemon yet: ops.py still drives xsd/store.py.  Not
thread-safe (one object, one thread: the event loop).
"""
import errno
import os

from typing import NamedTuple

from . import trie as _checked  # noqa: F401  (the build stamp is checked at its import)
from ._xsd_native import ffi, lib

__all__ = ["NodeStore", "NodeView"]


class NodeView(NamedTuple):
    """A copy of one node: what ``xsd.store.Node`` offers a reader."""
    value: bytes
    perms: tuple            # ((kind, domid), ...), owner first
    children: dict          # name -> None, in creation order
    gen: int

    @property
    def owner(self) -> int:
        return self.perms[0][1]


def _encode_perms(perms) -> bytes:
    """``(("n", 0), ("r", 5))`` -> ``b"n0\\0r5\\0"``; C checks what it gets."""
    return b"".join(b"%s%d\0" % (kind.encode(), domid) for kind, domid in perms)

_NULL = ffi.NULL
_BUF_START = 4096
_PERMS_CACHE_MAX = 4096


def _fail(rc, path):
    code = -rc
    if code == errno.ENOENT:
        raise KeyError(path)
    if code in (errno.EINVAL, errno.E2BIG, errno.ENAMETOOLONG):
        raise ValueError("%s: %r" % (os.strerror(code), path))
    if code == errno.ENOMEM:
        raise MemoryError("xsd._native: out of memory")
    raise OSError(code, os.strerror(code), path)


class NodeStore:
    """xenstore's node tree in C; interface and semantics of ``PyNodeStore``."""

    __slots__ = ("_h", "_view", "_buf", "_cap", "_perms", "_encoded")
    backend = "cffi"

    def __init__(self):
        h = lib.xsd_store_new()
        if h == _NULL:
            raise MemoryError("xsd._native: out of memory")
        self._h = ffi.gc(h, lib.xsd_store_free)
        self._view = ffi.new("struct xsd_node_view *")
        self._buf = ffi.new("char[]", _BUF_START)
        self._cap = _BUF_START
        self._perms = {}        # encoded bytes -> tuple
        self._encoded = {}      # tuple -> encoded bytes

    def _decode_perms(self, raw: bytes) -> tuple:
        perms = self._perms.get(raw)
        if perms is None:
            if len(self._perms) >= _PERMS_CACHE_MAX:
                self._perms.clear()
            perms = self._perms[raw] = tuple(
                (field[:1].decode(), int(field[1:])) for field in raw.split(b"\0")[:-1])
        return perms

    def _encode(self, perms) -> bytes:
        raw = self._encoded.get(perms)
        if raw is None:
            if len(self._encoded) >= _PERMS_CACHE_MAX:
                self._encoded.clear()
            raw = self._encoded[perms] = _encode_perms(perms)
        return raw

    def _listing(self, fn, path: str, key: bytes) -> bytes:
        """Call ``fn(handle, key, len, buf, cap) -> n`` with a buffer that fits."""
        buf, cap = self._buf, self._cap
        while True:
            n = fn(self._h, key, len(key), buf, cap)
            if n < 0:
                _fail(n, path)
            if n <= cap:
                return ffi.unpack(buf, n)
            cap = max(n, 2 * cap)               # a big directory or subtree: not kept
            buf = ffi.new("char[]", cap)

    @property
    def handle(self):
        """The raw ``xsd_store *`` (for the C request path, xsd/_native/engine.py)."""
        return self._h

    def get(self, path: str):
        key = path.encode()
        view = self._view
        rc = lib.xsd_store_get(self._h, key, len(key), view)
        if rc:
            if rc == -errno.ENOENT:
                return None
            _fail(rc, path)
        value = ffi.unpack(view.value, view.value_len)
        perms = self._decode_perms(ffi.unpack(view.perms, view.perms_len))
        gen = view.gen
        names = self._listing(lib.xsd_store_children, path, key)
        children = dict.fromkeys(names[:-1].decode().split("\0")) if names else {}
        return NodeView(value, perms, children, gen)

    def children_bytes(self, path: str) -> bytes:
        return self._listing(lib.xsd_store_children, path, path.encode())

    def missing(self, path: str):
        key = path.encode()
        view = self._view
        n = lib.xsd_store_missing(self._h, key, len(key), view)
        if n < 0:
            _fail(n, path)
        return n, self._decode_perms(ffi.unpack(view.perms, view.perms_len))

    def write(self, path: str, value: bytes, perms: tuple) -> int:
        key = path.encode()
        raw = self._encode(perms)
        n = lib.xsd_store_write(self._h, key, len(key), value, len(value), raw, len(raw))
        if n < 0:
            _fail(n, path)
        return n

    def set_perms(self, path: str, perms: tuple) -> None:
        key = path.encode()
        raw = self._encode(perms)
        rc = lib.xsd_store_set_perms(self._h, key, len(key), raw, len(raw))
        if rc:
            _fail(rc, path)

    def rm(self, path: str) -> dict:
        key = path.encode()
        records = self._listing(lib.xsd_store_subtree, path, key)
        n = lib.xsd_store_rm(self._h, key, len(key))
        if n < 0:
            _fail(n, path)
        removed, at = {}, 0
        while at < len(records):
            cut = records.index(b"\0", at)
            end = records.index(b"\0\0", cut + 1) + 1    # the perms' last NUL
            removed[records[at:cut].decode()] = self._decode_perms(records[cut + 1:end])
            at = end + 1
        return removed

    def owned_by(self, domid: int) -> int:
        return lib.xsd_store_owned_by(self._h, domid)

    def stamp(self) -> int:
        return lib.xsd_store_stamp(self._h)

    def check(self) -> list:
        problems = lib.xsd_store_check(self._h)
        return ["xsd_store_check: %d problem(s)" % problems] if problems else []

    def stats(self) -> dict:
        """nodes, bytes (requested from malloc, still held), blocks, index_slots."""
        st = ffi.new("struct xsd_store_stats *")
        lib.xsd_store_stats(self._h, st)
        return {"nodes": st.nodes, "bytes": st.bytes, "blocks": st.blocks,
                "index_slots": st.index_slots}

    def __len__(self) -> int:
        return lib.xsd_store_count(self._h)

    def __repr__(self) -> str:
        return "<NodeStore cffi nodes=%d>" % len(self)
