"""Snapshots: the whole store and daemon state in one file, written atomically.

A snapshot compacts the journal: once it is on disk the journal restarts
empty.  Layout: a file header (``b"XSDS"``, version, epoch), then records
framed as in the journal (``journal.py``).  The first record holds META
(domains, quotas, special permissions); the next hold every node in
pre-order, the root as UPDATE and every other node as CREATE, so replay
rebuilds each parent's children in their order; the last ends with END and
the node count.  Unlike the journal a snapshot has no torn tail: it is
renamed into place only once complete and on disk, so any damage refuses.

Writing (``Writer``, or ``write`` all at once): ``<name>.tmp``, fsync,
rename over ``<name>``, fsync the directory, so a crash leaves the old
snapshot or the new one, whole.  A ``Writer`` writes one record per ``step``
(at most ``STEP_NODES`` nodes or ``CHUNK`` bytes), so that a running daemon
can write a snapshot between requests, from a frozen view of its store
(the store's ``freeze``), and fsync it in a thread.
"""
import os
import time

from .journal import (BATCH, COUNT, CREATE, END, FILE_HEADER, UPDATE, CorruptError, Codec,
                      file_header, frame, read_file_header, read_records)

SNAPSHOT_MAGIC = b"XSDS"
CHUNK = 1 << 20          # bytes of entries per record: bounded memory, cheap CRCs
STEP_NODES = 2048        # nodes per record: bounds one step of an incremental snapshot


def records(codec: Codec, store, meta: dict):
    """The records of a snapshot of ``store`` (a store that does not change meanwhile, or
    what its ``freeze`` gives: ``preorder()`` and ``next_gen``) and ``meta`` (framed bytes,
    in order)."""
    seq = 1
    parts = [BATCH.pack(seq, store.next_gen)]
    codec.meta(parts, meta)
    size = 0
    count = 0
    in_record = 0
    for path, node in store.preorder():
        codec.node(parts, CREATE if count else UPDATE, path, node)
        count += 1
        in_record += 1
        size += len(node.value) + len(path) + 32
        if size >= CHUNK or in_record >= STEP_NODES:
            in_record = 0
            yield frame(b"".join(parts))
            seq += 1
            parts = [BATCH.pack(seq, store.next_gen)]
            size = 0
    parts.append(COUNT.pack(END, count))
    yield frame(b"".join(parts))


class Writer:
    """One snapshot file being written: ``step`` until it returns False, ``sync`` (may run in
    another thread: it touches only the descriptor), then ``install``; or ``abandon``."""

    def __init__(self, path: str, epoch: int, codec: Codec, tree, meta: dict):
        self.path = path
        self.tmp = path + ".tmp"
        self.started = time.monotonic()
        self.size = 0
        self.steps = 0                  # ``step`` calls: the log line says how many it took
        self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        self._records = records(codec, tree, meta)
        self._write(file_header(SNAPSHOT_MAGIC, epoch))

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            done = os.write(self.fd, view)
            view = view[done:]
        self.size += len(data)

    def step(self) -> bool:
        """Write the next record; False once there is none left."""
        self.steps += 1
        record = next(self._records, None)
        if record is None:
            return False
        self._write(record)
        return True

    def sync(self) -> None:
        os.fsync(self.fd)

    def install(self) -> int:
        """Rename the synced file into place, durably; return its size."""
        os.close(self.fd)
        self.fd = -1
        os.rename(self.tmp, self.path)
        fsync_dir(os.path.dirname(self.path) or ".")
        return self.size

    def abandon(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def write(path: str, epoch: int, codec: Codec, store, meta: dict) -> int:
    """Write the snapshot atomically and durably, all at once; return its size in bytes."""
    writer = Writer(path, epoch, codec, store, meta)
    try:
        while writer.step():
            pass
        writer.sync()
    except BaseException:
        writer.abandon()
        raise
    size = writer.install()
    write.last_seconds = time.monotonic() - writer.started
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
    if count != len(store):
        raise CorruptError(f"{name}: end marker counts {count} nodes, {len(store)} loaded")
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
