"""Snapshots: the whole store and daemon state in one file, written atomically.

A snapshot compacts the journal: once it is on disk the journal restarts
empty.  Layout: a file header (``b"XSDS"``, version, epoch), then records
framed as in the journal (``journal.py``).  The first record holds META
(domains, quotas, special permissions); the next hold every node in
pre-order, the root as UPDATE and every other node as CREATE, so replay
rebuilds each parent's children in their order; the last ends with END and
the node count.  Unlike the journal a snapshot has no torn tail: it is
renamed into place only once complete and on disk, so any damage refuses.

Writing (``write``): ``<name>.tmp``, fsync, rename over ``<name>``, fsync
the directory, so a crash leaves the old snapshot or the new one, whole.
"""
import os
import time

from xenstore_protocol.paths import join

from .journal import (BATCH, COUNT, CREATE, END, FILE_HEADER, UPDATE, CorruptError, Codec,
                      file_header, frame, read_file_header, read_records)

SNAPSHOT_MAGIC = b"XSDS"
CHUNK = 1 << 20          # bytes of entries per record: bounded memory, cheap CRCs


def preorder(nodes: dict):
    """``(path, node)`` for every node, each parent before its children, children in order."""
    stack = ["/"]
    while stack:
        path = stack.pop()
        node = nodes[path]
        yield path, node
        if node.children:
            stack.extend(join(path, name) for name in reversed(node.children))


def records(codec: Codec, store, meta: dict):
    """The records of a snapshot of ``store`` and ``meta`` (framed bytes, in order)."""
    seq = 1
    parts = [BATCH.pack(seq, store.next_gen)]
    codec.meta(parts, meta)
    size = 0
    count = 0
    for path, node in preorder(store.nodes):
        codec.node(parts, CREATE if count else UPDATE, path, node)
        count += 1
        size += len(node.value) + len(path) + 32
        if size >= CHUNK:
            yield frame(b"".join(parts))
            seq += 1
            parts = [BATCH.pack(seq, store.next_gen)]
            size = 0
    parts.append(COUNT.pack(END, count))
    yield frame(b"".join(parts))


def write(path: str, epoch: int, codec: Codec, store, meta: dict) -> int:
    """Write the snapshot atomically and durably; return its size in bytes."""
    tmp = path + ".tmp"
    started = time.monotonic()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb", buffering=CHUNK, closefd=False) as f:
            f.write(file_header(SNAPSHOT_MAGIC, epoch))
            for record in records(codec, store, meta):
                f.write(record)
        size = os.lseek(fd, 0, os.SEEK_END)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    fsync_dir(os.path.dirname(path) or ".")
    write.last_seconds = time.monotonic() - started
    return size


write.last_seconds = 0.0


def load(data, offset: int, name: str, codec: Codec, store, on_meta) -> int:
    """Apply the snapshot records in ``data`` from ``offset`` to an empty ``store``; return the node count."""
    payloads, end, torn = read_records(data, offset, name)
    if torn:
        raise CorruptError(f"{name}: damaged record at offset {end} ({torn} bytes): "
                           "a snapshot is written whole, so this is corruption")
    count = -1
    for payload in payloads:
        if count >= 0:
            raise CorruptError(f"{name}: records after the end marker")
        count = codec.apply(store, payload, BATCH.size, on_meta)
        store.next_gen = max(store.next_gen, BATCH.unpack_from(payload)[1])
    if count < 0:
        raise CorruptError(f"{name}: no end marker: incomplete snapshot")
    if count != len(store.nodes):
        raise CorruptError(f"{name}: end marker counts {count} nodes, {len(store.nodes)} loaded")
    return count


def read_epoch(data, name: str) -> int:
    return read_file_header(data, SNAPSHOT_MAGIC, name)


def fsync_dir(path: str) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


HEADER_SIZE = FILE_HEADER.size
