"""The node store in C (store.h), behind the interface of ``xsd.nodestore.PyNodeStore``.

    from xsd._native.store import NodeStore
    s = NodeStore()
    s.write("/local/domain/1/name", b"vm1", (Perm("n", 0),))   # -> 4 nodes created
    s.get("/local/domain/1/name").value                          # -> b"vm1"

The interface (semantics in xsd/nodestore.py's docstring, contracts in store.h):
get(path, children=True), children_bytes, keep_listings, missing, write, set_value, set_perms,
rm, put, move_last, load, next_gen, track, has_changes, take_changes, dump, nodes,
naming, bytes_of, owned_by, stamp, check, stats, len; ``handle`` is the raw
``xsd_store *`` for xsd._native.engine only.

One C handle, owned by this object through ``ffi.gc``; every return code is
checked here and nowhere else.  Nodes live in C, one block each (no Python
object per node); ``get`` builds a ``NodeView`` copy on demand.  Permissions
cross as the wire encodes them (``b"n0\\0r5\\0"``): given as pairs
``(kind, domid)`` (``xenstore_protocol.perms.Perm`` is one), given back as
plain tuples, which compare equal to ``Perm``; decoded lists are cached by
their bytes.  Like the rest of ``xsd._native`` this module imports nothing
from xsd or xenstore_protocol; ``xsd.core.store.new_store`` picks the backend.  Importing this module checks the build stamp (xsd._native.trie),
so a stale extension is never used.

Not thread-safe (one object, one thread: the event loop).
"""
import errno
import os
import struct

from typing import NamedTuple

from . import trie as _checked  # noqa: F401  (the build stamp is checked at its import)
from ._xsd_native import ffi, lib

__all__ = ["NodeStore", "NodeView", "CREATED", "UPDATED", "REMOVED"]

# Change-log kinds (store.h XSD_CHANGE_*; the same numbers as xsd/core/store.py).
CREATED, UPDATED, REMOVED = lib.XSD_CHANGE_CREATED, lib.XSD_CHANGE_UPDATED, lib.XSD_CHANGE_REMOVED


class NodeView(NamedTuple):
    """A copy of one node: what ``xsd.store.Node`` offers a reader."""
    value: bytes
    perms: tuple            # ((kind, domid), ...), owner first
    children: dict          # name -> None, in creation order (None: not asked for)
    gen: int

    @property
    def owner(self) -> int:
        return self.perms[0][1]


def _encode_perms(perms) -> bytes:
    """``(("n", 0), ("r", 5))`` -> ``b"n0\\0r5\\0"``; C checks what it gets."""
    return b"".join(b"%s%d\0" % (kind.encode(), domid) for kind, domid in perms)

_NULL = ffi.NULL
_new_tuple = tuple.__new__      # NodeView without NamedTuple's argument handling (get is hot)
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

    __slots__ = ("_h", "_view", "_buf", "_bytes", "_cap", "_meta", "_perms", "_encoded",
                 "_dump_cap")
    backend = "cffi"

    def __init__(self):
        h = lib.xsd_store_new()
        if h == _NULL:
            raise MemoryError("xsd._native: out of memory")
        self._h = ffi.gc(h, lib.xsd_store_free)
        self._view = ffi.new("struct xsd_node_view *")
        self._buf = ffi.new("char[]", _BUF_START)
        self._cap = _BUF_START
        self._bytes = ffi.buffer(self._buf)     # slices of it are bytes copies
        self._meta = ffi.new("uint64_t[2]")     # xsd_store_read: gen, perms length
        self._perms = {}        # encoded bytes -> tuple
        self._encoded = {}      # tuple -> encoded bytes
        self._dump_cap = 0      # the last dump's size: the next one starts there

    @property
    def handle(self):
        """The ``xsd_store *`` (cdata), for xsd._native.engine only: it stays owned here."""
        return self._h

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

    def get(self, path: str, children: bool = True):
        """A ``NodeView`` copy, or None.  ``children=False`` skips the children listing
        (``NodeView.children`` is None then): the cheap call when only value, perms or gen
        are read."""
        key = path.encode()
        meta = self._meta
        n = lib.xsd_store_read(self._h, key, len(key), self._buf, self._cap, meta)
        if n < 0:
            if n == -errno.ENOENT:
                return None
            _fail(n, path)
        if n <= self._cap:
            raw = self._bytes[0:n]
        else:                                   # a big value: a buffer of its size, once
            buf = ffi.new("char[]", n)
            n = lib.xsd_store_read(self._h, key, len(key), buf, n, meta)
            raw = ffi.buffer(buf, n)[:]
        cut = meta[1]
        perms = self._perms.get(raw[:cut]) or self._decode_perms(raw[:cut])
        value = raw[cut:]
        gen = meta[0]
        if not children:
            return _new_tuple(NodeView, (value, perms, None, gen))
        names = self._listing(lib.xsd_store_children, path, key)
        children = dict.fromkeys(names[:-1].decode().split("\0")) if names else {}
        return _new_tuple(NodeView, (value, perms, children, gen))

    def children_bytes(self, path: str) -> bytes:
        return self._listing(lib.xsd_store_children, path, path.encode())

    def keep_listings(self, min_len: int) -> None:
        """Keep copies of children listings of ``min_len`` bytes or more (0: none; store.h
        xsd_store_keep_listings); tests set 1 so that every listing is kept."""
        lib.xsd_store_keep_listings(self._h, min_len)

    def last_children_bytes(self, path: str, count: int) -> bytes:
        """The last ``count`` names of ``children_bytes`` (all if fewer), in O(count)."""
        def last(h, key, length, buf, cap):
            return lib.xsd_store_last_children(h, key, length, count, buf, cap)
        return self._listing(last, path, path.encode())

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

    def set_value(self, path: str, value: bytes) -> None:
        """An existing node's value; stamped once (KeyError if missing)."""
        key = path.encode()
        view = self._view
        rc = lib.xsd_store_get(self._h, key, len(key), view)
        if rc:
            _fail(rc, path)
        n = lib.xsd_store_write(self._h, key, len(key), value, len(value), _NULL, 0)
        if n < 0:
            _fail(n, path)

    def put(self, path: str, value: bytes, perms: tuple) -> int:
        """A transaction commit's write: an existing node gets value and perms (stamped
        once: 0), a missing one whose parent exists is created last (1)."""
        key = path.encode()
        raw = self._encode(perms)
        n = lib.xsd_store_put(self._h, key, len(key), value, len(value), raw, len(raw))
        if n < 0:
            _fail(n, path)
        return n

    def move_last(self, path: str) -> None:
        """Move path to the end of its parent's children (no stamp, no change record)."""
        key = path.encode()
        rc = lib.xsd_store_move_last(self._h, key, len(key))
        if rc:
            _fail(rc, path)

    def load(self, path: str, value: bytes, perms: tuple, gen: int) -> int:
        """Replay: the node gets exactly value, perms and gen (1: created last under its
        existing parent, 0: overwritten); no stamp, no change record."""
        key = path.encode()
        raw = self._encode(perms)
        n = lib.xsd_store_load(self._h, key, len(key), value, len(value), raw, len(raw), gen)
        if n < 0:
            _fail(n, path)
        return n

    @property
    def next_gen(self) -> int:
        return lib.xsd_store_next_gen(self._h)

    @next_gen.setter
    def next_gen(self, gen: int) -> None:
        lib.xsd_store_set_next_gen(self._h, gen)

    def track(self, on: bool) -> None:
        """Change tracking on (an empty log unless already on) or off (the log dropped)."""
        lib.xsd_store_track(self._h, 1 if on else 0)

    def has_changes(self) -> bool:
        """Records in the change log (O(1) when it is empty)."""
        return lib.xsd_store_changes(self._h, _NULL, 0) != 0

    def take_changes(self) -> dict:
        """``{path: CREATED|UPDATED|REMOVED}`` since the last take, in first-change order;
        the log is emptied."""
        buf, cap = self._buf, self._cap
        while True:
            n = lib.xsd_store_take_changes(self._h, buf, cap)
            if n <= cap:
                break
            cap = max(n, 2 * cap)
            buf = ffi.new("char[]", cap)
        raw = ffi.unpack(buf, n)
        return {record[1:].decode(): record[0] for record in raw.split(b"\0")[:-1]}

    def dump(self) -> bytes:
        """Every node in pre-order as store.h's xsd_store_dump records (``nodes`` parses
        them)."""
        cap = self._dump_cap + (self._dump_cap >> 3) + 4096
        while True:
            buf = ffi.new("char[]", cap)
            n = lib.xsd_store_dump(self._h, buf, cap)
            if n < 0:
                _fail(n, "/")
            if n <= cap:
                self._dump_cap = n
                return ffi.buffer(buf, n)[:]
            cap = n

    def nodes(self, dump: bytes = None, children: bool = True):
        """``(path, value, perms, gen, children_names)`` for every node in pre-order, parsed
        from ``dump`` (default: a fresh ``self.dump()``).  ``children=False`` gives None
        for the names and is about 3x faster: pre-order records replayed through ``load``
        rebuild every children order without them."""
        raw = self.dump() if dump is None else dump
        if not children:
            return _parse_records(raw, self._decode_perms, None)
        return parse_dump(raw, self._decode_perms)

    def naming(self, domid: int) -> list:
        """``[(path, owned), ...]``: the nodes whose permissions name ``domid``, in
        pre-order (``dump``'s), ``owned`` when it is their owner; one C walk, no record
        of the other nodes."""
        buf, cap = self._buf, self._cap
        while True:
            n = lib.xsd_store_naming(self._h, domid, buf, cap)
            if n < 0:
                _fail(n, "/")
            if n <= cap:
                break
            cap = n
            buf = ffi.new("char[]", cap)
        raw = ffi.unpack(buf, n)
        return [(record[1:].decode(), record[0] == 0x4F)    # b"O": owned
                for record in raw.split(b"\0")[:-1]]

    def bytes_of(self, domid: int) -> int:
        """Bytes charged to domid's nodes (quota.memory_of_node summed), root included."""
        return lib.xsd_store_bytes_of(self._h, domid)

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


_GEN_LEN = struct.Struct("<QI")


def _parse_records(raw: bytes, decode_perms, kids):
    """xsd_store_dump records -> ``(path, value, perms, gen, None)``; with ``kids`` (a
    dict) also files each name under its parent's path."""
    at, end, unpack_from, index = 0, len(raw), _GEN_LEN.unpack_from, raw.index
    while at < end:
        cut = index(b"\0", at)
        stop = index(b"\0\0", cut + 1) + 1                # the perms' last NUL
        gen, vlen = unpack_from(raw, stop + 1)
        vstart = stop + 13
        path = raw[at:cut].decode()
        at = vstart + vlen
        if kids is not None:
            up, _, name = path.rpartition("/")
            if name:                                       # not the root
                up = up or "/"
                names = kids.get(up)
                if names is None:
                    kids[up] = [name]
                else:
                    names.append(name)
        yield path, raw[vstart:at], decode_perms(raw[cut + 1:stop]), gen, None


def parse_dump(raw: bytes, decode_perms):
    """Records of xsd_store_dump -> ``(path, value, perms, gen, children)`` in pre-order;
    ``children`` is the tuple of child names in creation order (gathered in one pass
    first: in pre-order a node comes before its children)."""
    kids = {}
    records = list(_parse_records(raw, decode_perms, kids))
    get, none = kids.get, ()
    for path, value, perms, gen, _ in records:
        names = get(path)
        yield path, value, perms, gen, tuple(names) if names else none
