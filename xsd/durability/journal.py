"""The journal: redo records of the store, one record per batch of requests.

Why node state and not requests: replaying a request would need the same
permissions, quotas and domain table at every step; a node's state after a
batch is self-contained, idempotent and as small as the change.  A batch is
one record with one CRC, so whatever it holds (a transaction's whole commit
among it) is replayed entirely or not at all.

Layout, little-endian (the file never leaves the machine that wrote it)::

    file header  b"XSDJ" | version u32 | epoch u64                 16 bytes
    record       b"XSDR" | length u32 | crc32 u32 | payload        12 + length
    payload      seq u64 | next_gen u64 | entry ...

    entry        CREATE/UPDATE  kind u8 | path u16 | value u32 | perms u16 | gen u64
                                | path | value | perms ("n0\\0r5\\0", as on the wire)
                 DELETE         kind u8 | path u16 | path
                 ORDER          kind u8 | path u16 | names u32 | path | names ("a\\0b\\0")
                 META           kind u8 | length u32 | JSON (domains, quotas, special perms,
                                guests' watches)
                 WATCH          kind u8 | domid u32 | relative u8 | path u16 | token u16
                                | path | token          (a guest registered a watch)
                 UNWATCH        kind u8 | domid u32 | relative u8 | path u16 | token u16
                                | path | token          (it removed one; relative is 0)
                 END            kind u8 | nodes u64 (ends a snapshot)

The CRC covers the length field and the payload.  ``seq`` counts records from
1 in each journal file; ``epoch`` ties a journal to the snapshot it follows
(``snapshot.py``).

Children order.  DIRECTORY lists children in creation order, so replay must
rebuild it.  Records carry no child lists (a parent with many children would
be rewritten whole on every create); instead CREATE means "(re)append to the
parent's children", as the live store does.  Children a batch creates are
exactly the tail of their parent's list, so ``encode_changes`` emits them in
that order (parents first).  ORDER, an explicit list, is the fallback should
that ever not hold.
"""
import json
import logging
import struct
import zlib
from collections import Counter

from xenstore_protocol.paths import join, parent
from xenstore_protocol.perms import encode_list, parse

from ..core.store import CREATED, UPDATED

log = logging.getLogger("xsd.journal")

FILE_HEADER = struct.Struct("<4sIQ")
JOURNAL_MAGIC = b"XSDJ"
VERSION = 1
RECORD = struct.Struct("<4sII")
RECORD_MAGIC = b"XSDR"
BATCH = struct.Struct("<QQ")
LENGTH = struct.Struct("<I")

CREATE, UPDATE, DELETE, ORDER, META, END, WATCH, UNWATCH = 1, 2, 3, 4, 5, 6, 7, 8
NODE = struct.Struct("<BHIHQ")
PATH = struct.Struct("<BH")
NAMES = struct.Struct("<BHI")
BLOB = struct.Struct("<BI")
COUNT = struct.Struct("<BQ")
WATCH_ENTRY = struct.Struct("<BIBHH")


class StateError(Exception):
    """The saved state cannot be used: the daemon says why and does not start."""


class CorruptError(StateError):
    """Saved state that cannot be trusted: the daemon refuses to start on it."""


# -- records ----------------------------------------------------------------

def frame(payload: bytes) -> bytes:
    """One record: magic, length, CRC32 (over length and payload), payload."""
    length = LENGTH.pack(len(payload))
    return RECORD.pack(RECORD_MAGIC, len(payload), zlib.crc32(payload, zlib.crc32(length))) + payload


def _valid_at(data, offset: int):
    """The payload of a sound record at ``offset``, else None."""
    if offset + RECORD.size > len(data):
        return None
    magic, length, crc = RECORD.unpack_from(data, offset)
    end = offset + RECORD.size + length
    if magic != RECORD_MAGIC or end > len(data):
        return None
    payload = data[offset + RECORD.size:end]
    if zlib.crc32(payload, zlib.crc32(LENGTH.pack(length))) != crc:
        return None
    return payload


def read_records(data, offset: int, name: str, salvage: bool = False):
    """Every sound record of ``data`` from ``offset``: ``(payloads, end, torn)``.

    Zeros to the end of the file are space allocated ahead of the writes
    (persist.py), not damage: the records end where they begin.

    A bad record (wrong magic, length past the end, CRC mismatch) followed by
    no sound record is a torn tail: the last write, cut short.  It is
    dropped; ``end`` is where the good records stop and ``torn`` how many
    bytes follow.  A bad record with a sound one after it was written whole
    once and damaged since: CorruptError, naming both offsets.  Records must
    number 1, 2, 3...; a gap is corruption too.  ``salvage``: stop at the
    first bad record instead of raising.
    """
    payloads = []
    view = memoryview(data)
    size = len(data)
    while offset < size:
        payload = _valid_at(view, offset)
        if payload is None:
            if data.count(0, offset) == size - offset:
                break               # space allocated ahead, never written: the end
            later = _next_sound_record(view, offset + 1)
            if later is None or salvage:
                return payloads, offset, len(data.rstrip(b"\0")) - offset
            raise CorruptError(
                f"{name}: record {len(payloads) + 1} at offset {offset} is damaged, and a sound "
                f"record follows at offset {later}: this is not a torn last write")
        seq = BATCH.unpack_from(payload)[0] if len(payload) >= BATCH.size else -1
        if seq != len(payloads) + 1:
            if salvage:
                return payloads, offset, size - offset
            raise CorruptError(f"{name}: record at offset {offset} has sequence number {seq}, "
                               f"expected {len(payloads) + 1}")
        payloads.append(payload)
        offset += RECORD.size + len(payload)
    return payloads, offset, 0


def _next_sound_record(view, offset: int):
    data = view.obj if isinstance(view, memoryview) else view
    while True:
        offset = data.find(RECORD_MAGIC, offset)
        if offset < 0:
            return None
        if _valid_at(view, offset) is not None:
            return offset
        offset += 1


# -- entries ----------------------------------------------------------------

class Codec:
    """Entry encoder/decoder with small caches: permission lists repeat a lot."""

    CACHE_MAX = 4096

    def __init__(self):
        self._perms_bytes = {}
        self._perms_tuple = {}

    def perms_bytes(self, perms: tuple) -> bytes:
        raw = self._perms_bytes.get(perms)
        if raw is None:
            if len(self._perms_bytes) >= self.CACHE_MAX:
                self._perms_bytes.clear()
            raw = self._perms_bytes[perms] = encode_list(perms)
        return raw

    def perms_tuple(self, raw: bytes) -> tuple:
        perms = self._perms_tuple.get(raw)
        if perms is None:
            if len(self._perms_tuple) >= self.CACHE_MAX:
                self._perms_tuple.clear()
            fields = raw.split(b"\0")
            fields.pop()
            if not fields:
                raise CorruptError("a node without permissions")
            perms = self._perms_tuple[raw] = tuple(parse(f) for f in fields)
        return perms

    def node(self, parts: list, kind: int, path: str, node) -> None:
        raw_path = path.encode("ascii")
        perms = self.perms_bytes(node.perms)
        value = node.value
        parts.append(NODE.pack(kind, len(raw_path), len(value), len(perms), node.gen))
        parts.append(raw_path)
        parts.append(value)
        parts.append(perms)

    @staticmethod
    def delete(parts: list, path: str) -> None:
        raw_path = path.encode("ascii")
        parts.append(PATH.pack(DELETE, len(raw_path)))
        parts.append(raw_path)

    @staticmethod
    def order(parts: list, path: str, names: bytes) -> None:
        raw_path = path.encode("ascii")
        parts.append(NAMES.pack(ORDER, len(raw_path), len(names)))
        parts.append(raw_path)
        parts.append(names)

    @staticmethod
    def meta(parts: list, state: dict) -> None:
        raw = json.dumps(state, sort_keys=True, separators=(",", ":")).encode("ascii")
        parts.append(BLOB.pack(META, len(raw)))
        parts.append(raw)

    @staticmethod
    def watch(parts: list, kind: int, domid: int, path: str, token: bytes, relative: bool) -> None:
        raw = path.encode("ascii")
        parts.append(WATCH_ENTRY.pack(kind, domid, relative, len(raw), len(token)))
        parts.append(raw)
        parts.append(token)

    # -- decoding -------------------------------------------------------------
    def apply(self, store, payload, offset: int, on_meta, on_watch=None) -> int:
        """Apply the entries of ``payload`` from ``offset`` to ``store``; return END's count or -1.

        Through the store's loading interface (``load``, ``unload``, ``order``: no
        generation stamping, no change tracking); owner counts are recomputed by
        the caller afterwards (``recount``).
        META goes to ``on_meta(state)``, WATCH / UNWATCH to
        ``on_watch(kind, domid, path, token, relative)``.  One method per
        entry kind (``_ENTRIES``), each returning the offset after its entry.
        """
        target = _Target(store, on_meta, on_watch)
        size = len(payload)
        try:
            while offset < size:
                kind = payload[offset]
                read = _ENTRIES.get(kind)
                if read is None:
                    raise CorruptError(f"unknown entry kind {kind} at offset {offset}")
                offset = read(self, target, kind, payload, offset)
        except (struct.error, UnicodeDecodeError, ValueError, IndexError) as err:
            raise CorruptError(f"undecodable entry at offset {offset}: {err}") from None
        if offset != size:
            raise CorruptError("entry runs past the end of its record")
        return target.count

    def _node_entry(self, target, kind, payload, offset: int) -> int:
        """CREATE (re)appends to the parent's children; UPDATE changes a node in place."""
        _, plen, vlen, perms_len, gen = NODE.unpack_from(payload, offset)
        path, offset = _text(payload, offset + NODE.size, plen)
        value, offset = _bytes(payload, offset, vlen)
        raw_perms, offset = _bytes(payload, offset, perms_len)
        perms = self.perms_tuple(raw_perms)
        try:
            target.store.load(path, value, perms, gen, append=kind == CREATE)
        except KeyError:
            if kind == CREATE:
                raise CorruptError(f"{path} created under a missing parent") from None
            raise CorruptError(f"update of {path}, which does not exist") from None
        return offset

    def _delete_entry(self, target, kind, payload, offset: int) -> int:
        _, plen = PATH.unpack_from(payload, offset)
        path, offset = _text(payload, offset + PATH.size, plen)
        if path == "/":
            raise CorruptError("deletion of the root")
        target.store.unload(path)
        return offset

    def _order_entry(self, target, kind, payload, offset: int) -> int:
        _, plen, nlen = NAMES.unpack_from(payload, offset)
        path, offset = _text(payload, offset + NAMES.size, plen)
        names, offset = _text(payload, offset, nlen)
        try:
            target.store.order(path, names.split("\0")[:-1])
        except ValueError as err:
            raise CorruptError(str(err)) from None
        return offset

    def _meta_entry(self, target, kind, payload, offset: int) -> int:
        _, blen = BLOB.unpack_from(payload, offset)
        offset += BLOB.size
        target.on_meta(json.loads(bytes(payload[offset:offset + blen])))
        return offset + blen

    def _watch_entry(self, target, kind, payload, offset: int) -> int:
        _, domid, relative, plen, tlen = WATCH_ENTRY.unpack_from(payload, offset)
        path, offset = _text(payload, offset + WATCH_ENTRY.size, plen)
        token, offset = _bytes(payload, offset, tlen)
        if offset > len(payload):
            raise ValueError("watch entry past the end")
        if target.on_watch is not None:
            target.on_watch(kind, domid, path, token, bool(relative))
        return offset

    def _end_entry(self, target, kind, payload, offset: int) -> int:
        target.count = COUNT.unpack_from(payload, offset)[1]
        return offset + COUNT.size


def _bytes(payload, offset: int, length: int):
    """``length`` bytes at ``offset``, and the offset after them."""
    return bytes(payload[offset:offset + length]), offset + length


def _text(payload, offset: int, length: int):
    """The same, as ASCII text (paths, names)."""
    return bytes(payload[offset:offset + length]).decode("ascii"), offset + length


class _Target:
    """Where ``Codec.apply`` puts what it decodes."""
    __slots__ = ("store", "on_meta", "on_watch", "count")

    def __init__(self, store, on_meta, on_watch):
        self.store = store
        self.on_meta = on_meta
        self.on_watch = on_watch
        self.count = -1


_ENTRIES = {
    CREATE: Codec._node_entry, UPDATE: Codec._node_entry, DELETE: Codec._delete_entry,
    ORDER: Codec._order_entry, META: Codec._meta_entry, WATCH: Codec._watch_entry,
    UNWATCH: Codec._watch_entry, END: Codec._end_entry,
}


def encode_changes(codec: Codec, parts: list, store, changes: dict) -> None:
    """Entries for what ``changes`` (path -> CREATED/UPDATED/REMOVED) did to ``store``."""
    created = []
    get = store.get
    for path, change in changes.items():
        node = get(path)
        if node is None:
            codec.delete(parts, path)
        elif change == UPDATED:
            codec.node(parts, UPDATE, path, node)
        elif change == CREATED:
            created.append(path)
    if created:
        _encode_created(codec, parts, store, created)


def _encode_created(codec: Codec, parts: list, store, created: list) -> None:
    """CREATE entries in the order replay must append them: parents first, siblings as listed.

    The k children a batch created under a parent are the last k of its
    children (made after everything older), so only they are visited.
    """
    created_set = set(created)
    per_parent = Counter(parent(path) for path in created)
    stack = [p for p in per_parent if p not in created_set]
    emitted = 0
    while stack:
        up_path = stack.pop()
        names = store.last_children(up_path, per_parent[up_path])
        explicit = not created_set.issuperset(join(up_path, name) for name in names)
        if explicit:
            # Not the tail after all: say the order outright (see the module docstring).
            log.warning("journal: children of %s not in creation order; recording the order", up_path)
            names = [name for name in store.child_names(up_path)
                     if join(up_path, name) in created_set]
        for name in names:
            path = join(up_path, name)
            codec.node(parts, CREATE, path, store.get(path))
            emitted += 1
            if path in per_parent:
                stack.append(path)
        if explicit:
            codec.order(parts, up_path, store.children_bytes(up_path))
    if emitted != len(created):
        raise AssertionError(f"journal: {len(created) - emitted} created nodes not reachable")


# -- a batch's record ------------------------------------------------------------

def record_builder(store, codec: Codec):
    """What builds each batch's record from ``store``'s change log: in C on the C store
    (xsd/_native/journal_enc.c: one crossing per batch, whatever the number of changed
    nodes), else ``PyRecords``, which is also the C builder's oracle."""
    if getattr(store, "handle", None) is not None:
        return CRecords(store)
    return PyRecords(store, codec)


class PyRecords:
    """A batch's record built here: ``encode_changes`` over the store's ``take_changes``,
    then ``tail``, framed."""

    def __init__(self, store, codec: Codec):
        self.store = store
        self.codec = codec

    def record(self, seq: int, tail: bytes = b""):
        """Record ``seq`` (the store's change log is emptied), or None when the log is empty
        and there is no ``tail`` (entries of the caller's: guests' watches, META)."""
        store = self.store
        changes = store.take_changes()
        if not changes and not tail:
            return None
        parts = [BATCH.pack(seq, store.next_gen)]
        if changes:
            encode_changes(self.codec, parts, store, changes)
        parts.append(tail)
        return frame(b"".join(parts))


class CRecords:
    """The same record built by xsd._native.journal_enc, byte for byte."""

    def __init__(self, store):
        from .._native.journal_enc import RecordEncoder
        self.encoder = RecordEncoder(store)

    def record(self, seq: int, tail: bytes = b""):
        """As ``PyRecords.record``; a buffer valid until the next call."""
        encoder = self.encoder
        record = encoder.record(seq, tail)
        if record is not None and encoder.orders:
            log.warning("journal: %d parents' children not in creation order; recording "
                        "the order", encoder.orders)
        return record


# -- files --------------------------------------------------------------------

def file_header(magic: bytes, epoch: int) -> bytes:
    return FILE_HEADER.pack(magic, VERSION, epoch)


def read_file_header(data, magic: bytes, name: str) -> int:
    """The epoch in a file header; CorruptError if it is not ours."""
    if len(data) < FILE_HEADER.size:
        raise CorruptError(f"{name}: {len(data)} bytes, shorter than its header")
    found, version, epoch = FILE_HEADER.unpack_from(data)
    if found != magic:
        raise CorruptError(f"{name}: not an xsd file (magic {found!r})")
    if version != VERSION:
        raise CorruptError(f"{name}: format version {version}, this xsd reads {VERSION}")
    return epoch
