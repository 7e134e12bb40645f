"""Durability: the daemon's state on disk, as a snapshot plus a journal of what followed.

Start-up (``start``, called by ``Daemon.__init__``): load ``xsd.snapshot``,
replay ``xsd.journal`` on top, drop a torn last record (logged), refuse a
damaged one with a sound record after it; then write a fresh snapshot and
start an empty journal (a new *epoch*), so every run begins clean.

Running: mutators note what they change (``Store.changes``, plus
``meta_dirty`` for domains, quotas and special permissions); ``commit``,
called by ``Daemon.flush`` before any output is handed on, turns all of it
into one journal record: one write and (``--fsync batch``) one fsync for
every request of the batch: group commit.  The journal is written at
offsets into space allocated ahead (``PREALLOC_BYTES`` at a time): an
fdatasync that need not also commit a new file size costs about a third
less; replay takes the zeros after the last record as the end.  (Two
designs that overlap the fsync with the next batch measured slower here: a
Python thread, and a C writer thread with the replies held until it reports
the batch durable.  Both make batches smaller, and on two cores each extra
fdatasync's CPU costs more than the overlap saves; docs/benchmarks.md.)  Once the journal outgrows ``journal_max_bytes`` (or twice the snapshot),
``checkpoint`` compacts it.

Epochs: snapshot and journal headers carry one.  A checkpoint writes the
snapshot of epoch E+1 first, then replaces the journal with an empty one of
epoch E+1; a crash between the two leaves a journal of epoch E, which the
snapshot already holds, and start-up skips it.

A write or fsync that fails stops the daemon (exit status 70): its memory
would hold changes the disk does not, and an acknowledgement must never get
ahead of the journal.  The restart replays what is on disk.
"""
import errno
import fcntl
import logging
import os
import shutil
import time

from xenstore_protocol.perms import parse

from . import snapshot
from ..core.domains import Domain
from .journal import (BATCH, FILE_HEADER, JOURNAL_MAGIC, UNWATCH, WATCH, Codec, CorruptError,
                      StateError, encode_changes, file_header, frame, read_file_header,
                      read_records)

log = logging.getLogger("xsd.persist")

SNAPSHOT_NAME = "xsd.snapshot"
JOURNAL_NAME = "xsd.journal"
LOCK_NAME = "xsd.lock"
EXIT_JOURNAL_FAILED = 70          # EX_SOFTWARE: the journal cannot be trusted any more
MAX_HOLD_SECONDS = 0.002          # hold_back never delays a commit longer than this
PREALLOC_BYTES = 1 << 20          # journal space allocated ahead of the writes


def start(d, handoff=None):
    """Fill daemon ``d`` from saved state (live-update hand-off, else snapshot and journal).

    Returns the ``Persistence`` when journaling (``config.state_dir``), else None.
    Raises StateError when the saved state cannot be trusted.
    """
    config = d.config
    if handoff is not None:
        load_state(d, handoff.data, handoff.offset, handoff.name)
    if not config.state_dir:
        if handoff is None:
            d._init_tree()
        return None
    persist = Persistence(d, config)
    try:
        if handoff is not None:
            persist.epoch = persist.existing_epoch()   # numbering goes on past what is on disk
        elif not persist.load():
            d._init_tree()
        persist.checkpoint()
    except BaseException:
        persist.close()
        raise
    d.store.changes = {}
    return persist


# -- state outside the store --------------------------------------------------

def meta_state(d) -> dict:
    """Domains, quotas, features and special permissions, as JSON-able data."""
    domains = d.domains
    return {
        "domains": [[x.domid, x.mfn, x.port, x.target, x.shutdown_seen, x.features, x.uuid]
                    for x in domains.domains.values()],
        "pending_features": [[domid, value] for domid, value in domains.pending_features.items()],
        "quotas": dict(d.quotas.values),
        "quota_overrides": [[domid, dict(values)] for domid, values in d.quotas.per_domain.items()],
        "special_perms": {name: [f"{p.kind}{p.domid}" for p in perms]
                          for name, perms in d.watches.special_perms.items()},
        "guest_watches": d.guest_watches.state() if d.guest_watches is not None else {},
    }


def restore_meta(d, state: dict) -> None:
    """Inverse of ``meta_state``.  Quotas given on this run's command line win over saved ones."""
    table = d.domains
    table.domains.clear()
    for row in state["domains"]:
        domid, mfn, port, target, shutdown_seen, features = row[:6]
        domain = Domain(domid, mfn, port, features)
        domain.target = target
        domain.shutdown_seen = shutdown_seen
        domain.uuid = row[6] if len(row) > 6 else None      # state saved before uuids were
        table.domains[domid] = domain
    table.pending_features = {domid: value for domid, value in state["pending_features"]}
    quotas = d.quotas
    quotas.values.update(state["quotas"])
    for name, value in d.config.quotas.items():
        quotas.set(name, value)
    quotas.per_domain = {domid: dict(values) for domid, values in state["quota_overrides"]}
    d.watches.special_perms = {name: tuple(parse(p.encode("ascii")) for p in perms)
                               for name, perms in state["special_perms"].items()}


def meta_loader(d, metas: list):
    """The META handler while loading: each kept for ``restore_meta`` (the last counts), and
    the guests' watches in it restored at once, so that the WATCH / UNWATCH entries of the
    journal apply in order around it (``GuestWatches.replay``)."""
    def on_meta(state: dict) -> None:
        metas.append(state)
        if d.guest_watches is not None:
            d.guest_watches.restore(state.get("guest_watches", {}))   # absent: saved before
    return on_meta


def load_state(d, data, offset: int, name: str) -> None:
    """Load snapshot records (``data`` from ``offset``) into ``d``, whose store holds only the root."""
    metas = []
    snapshot.load(data, offset, name, Codec(), d.store, meta_loader(d, metas))
    if metas:
        restore_meta(d, metas[-1])
    finish_load(d, name)


def finish_load(d, name: str) -> None:
    """Recount owners (the quota accounting) and check the tree before serving it."""
    store = d.store
    store.recount()
    problems = store.check()
    if problems:
        raise CorruptError(f"{name}: the loaded store is inconsistent: " + "; ".join(problems[:5]))


# -- guests' watches --------------------------------------------------------------

class GuestWatches:
    """The watches of guest domains, as the journal has them.

    A guest's ring outlives a crash of the daemon, and the guest's xenbus
    driver does not know to register its watches again; so they are journaled
    (WATCH / UNWATCH entries per change, the whole set in snapshots) and given
    back to the guest's session when its ring is re-attached (guest.py).
    Socket clients lose their connection in a crash and re-register by
    themselves, so theirs are not kept.  Changes come from the guest's own
    WATCH / UNWATCH / RESET_WATCHES, from a dropped or reset connection, and
    from the domain's release; never from the daemon shutting down.
    """

    def __init__(self):
        self.by_domid = {}        # domid -> {(path, token): relative}, in registration order
        self.pending = []         # (kind, domid, path, token, relative) not yet journaled

    def added(self, domid: int, path: str, token: bytes, relative: bool) -> None:
        watches = self.by_domid.setdefault(domid, {})
        if (path, token) not in watches:
            watches[(path, token)] = relative
            self.pending.append((WATCH, domid, path, token, relative))

    def removed(self, domid: int, path: str, token: bytes) -> None:
        watches = self.by_domid.get(domid)
        if watches is not None and watches.pop((path, token), None) is not None:
            self.pending.append((UNWATCH, domid, path, token, False))
            if not watches:
                del self.by_domid[domid]

    def cleared(self, domid: int) -> None:
        for path, token in list(self.by_domid.get(domid, ())):
            self.removed(domid, path, token)

    def replay(self, kind: int, domid: int, path: str, token: bytes, relative: bool) -> None:
        """A journal entry, at start-up."""
        if kind == WATCH:
            self.by_domid.setdefault(domid, {})[(path, token)] = relative
        else:
            watches = self.by_domid.get(domid, {})
            watches.pop((path, token), None)
            if not watches:
                self.by_domid.pop(domid, None)

    def state(self) -> dict:
        return {str(domid): [[path, token.hex(), relative]
                             for (path, token), relative in watches.items()]
                for domid, watches in self.by_domid.items()}

    def restore(self, state: dict) -> None:
        self.by_domid = {int(domid): {(path, bytes.fromhex(token)): relative
                                      for path, token, relative in watches}
                         for domid, watches in state.items()}

    def encode(self, codec, parts: list) -> None:
        for kind, domid, path, token, relative in self.pending:
            codec.watch(parts, kind, domid, path, token, relative)
        self.pending.clear()


# -- files ----------------------------------------------------------------------

class Persistence:
    def __init__(self, d, config):
        self.d = d
        self.dir = config.state_dir
        self.fsync = config.fsync
        self.fsync_interval = config.fsync_interval
        self.journal_max = config.journal_max_bytes
        self.salvage = config.journal_salvage
        self.snapshot_path = os.path.join(self.dir, SNAPSHOT_NAME)
        self.journal_path = os.path.join(self.dir, JOURNAL_NAME)
        self.codec = Codec()
        self.fd = -1
        self.epoch = 0
        self.seq = 0
        self.journal_size = 0         # bytes of records (and header): where the next one goes
        self.journal_allocated = 0    # bytes of file allocated (zeros past journal_size)
        self.snapshot_size = 0
        self.meta_dirty = False
        self.want_snapshot = False
        self.records = 0              # statistics: records written since start
        self.snapshots = 0
        self._sync_timer = None
        self.fsync_seconds = 0.0      # recent fdatasync duration (moving average)
        self._last_batches = 0        # transports' batches in the last commit
        self._hold_since = None
        os.makedirs(self.dir, exist_ok=True)
        self._lock_fd = self._lock()

    def _lock(self) -> int:
        """One daemon per state directory: two would interleave their journals."""
        path = os.path.join(self.dir, LOCK_NAME)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise StateError(f"{self.dir}: state directory in use by another xsd "
                                 f"({path} is locked)") from None
            raise
        return fd

    # -- start-up -------------------------------------------------------------
    def load(self) -> bool:
        """Load snapshot and journal into the daemon; False when there is nothing saved."""
        snap = _read(self.snapshot_path)
        journal = _read(self.journal_path)
        if snap is None:
            if journal is None:
                log.info("%s: no saved state: starting with the initial tree", self.dir)
                return False
            raise CorruptError(f"{self.journal_path} exists but {self.snapshot_path} does not: "
                               "the journal cannot be replayed without the snapshot it follows")
        started = time.monotonic()
        d = self.d
        self.epoch = snapshot.read_epoch(snap, self.snapshot_path)
        metas = []
        on_meta = meta_loader(d, metas)
        count = snapshot.load(snap, snapshot.HEADER_SIZE, self.snapshot_path, self.codec, d.store,
                              on_meta)
        replayed = 0
        if journal is None:
            log.warning("%s missing: state as of the snapshot only", self.journal_path)
        else:
            replayed = self._replay(journal, on_meta)
        if metas:
            restore_meta(d, metas[-1])
        known = d.domains.domains
        for domid in [x for x in d.guest_watches.by_domid if x not in known]:
            del d.guest_watches.by_domid[domid]     # not introduced (any more): nothing to give back
        finish_load(d, self.journal_path)
        log.info("loaded %s: epoch %d, %d nodes; replayed %d journal records; %d nodes now (%.0f ms)",
                 self.dir, self.epoch, count, replayed, len(d.store.nodes),
                 (time.monotonic() - started) * 1000)
        return True

    def existing_epoch(self) -> int:
        """The highest epoch in the files' headers (0 without files), whatever follows them."""
        epoch = 0
        for path, magic in ((self.snapshot_path, snapshot.SNAPSHOT_MAGIC),
                            (self.journal_path, JOURNAL_MAGIC)):
            try:
                with open(path, "rb") as f:
                    epoch = max(epoch, read_file_header(f.read(FILE_HEADER.size), magic, path))
            except (OSError, CorruptError):
                pass
        return epoch

    def _replay(self, journal: bytes, on_meta) -> int:
        name = self.journal_path
        epoch = read_file_header(journal, JOURNAL_MAGIC, name)
        if epoch < self.epoch:
            log.info("%s: epoch %d, already in the snapshot (epoch %d): skipped", name, epoch, self.epoch)
            return 0
        if epoch > self.epoch:
            raise CorruptError(f"{name}: epoch {epoch} follows a snapshot of epoch {epoch - 1}, "
                               f"but {self.snapshot_path} has epoch {self.epoch}")
        try:
            payloads, end, torn = read_records(journal, FILE_HEADER.size, name)
        except CorruptError as err:
            if not self.salvage:
                raise CorruptError(f"{err}.  Refusing to start on a store that would be silently "
                                   "wrong; --journal-salvage keeps the records before the damage "
                                   "and loses the rest") from None
            kept = f"{name}.damaged.{epoch}"
            shutil.copyfile(name, kept)
            log.error("%s; --journal-salvage: keeping the records before it (the whole journal "
                      "is kept as %s)", err, kept)
            payloads, end, torn = read_records(journal, FILE_HEADER.size, name, salvage=True)
        store = self.d.store
        apply = self.codec.apply
        on_watch = self.d.guest_watches.replay
        for payload in payloads:
            apply(store, payload, BATCH.size, on_meta, on_watch)
            store.next_gen = max(store.next_gen, BATCH.unpack_from(payload)[1])
        if torn:
            log.warning("%s: dropped a torn last record: %d bytes at offset %d (a batch cut short "
                        "by the crash, never acknowledged)", name, torn, end)
        return len(payloads)

    # -- running --------------------------------------------------------------
    def commit(self) -> None:
        """Journal the batch's changes: one write, and one fsync with ``--fsync batch``."""
        store = self.d.store
        changes = store.changes
        watches = self.d.guest_watches
        if not changes and not self.meta_dirty and not watches.pending:
            return
        try:
            parts = [BATCH.pack(self.seq + 1, store.next_gen)]
            if changes:
                encode_changes(self.codec, parts, store.nodes, changes)
            if watches.pending:
                watches.encode(self.codec, parts)      # before META, which holds the result
            if self.meta_dirty:
                self.codec.meta(parts, meta_state(self.d))
            size = self._append(frame(b"".join(parts)))
            if self.fsync == "batch":
                started = time.monotonic()
                os.fdatasync(self.fd)
                self.fsync_seconds += (time.monotonic() - started - self.fsync_seconds) / 8
            elif self.fsync == "interval" and self._sync_timer is None:
                self._schedule_sync()
        except BaseException:
            log.critical("journal %s: cannot record a batch; stopping so that nothing unrecorded "
                         "is acknowledged (restart replays what is on disk)", self.journal_path,
                         exc_info=True)
            logging.shutdown()
            os._exit(EXIT_JOURNAL_FAILED)
        self.seq += 1
        self.records += 1
        changes.clear()
        self.meta_dirty = False
        self.journal_size += size
        if self.journal_size > max(self.journal_max, 2 * self.snapshot_size):
            self.want_snapshot = True

    def _append(self, data: bytes) -> int:
        """Write ``data`` at the journal's end, allocating ahead when it reaches the allocated
        end (``posix_fallocate``; glibc writes zeros where the file system cannot)."""
        end = self.journal_size + len(data)
        if end > self.journal_allocated:
            want = end + PREALLOC_BYTES
            os.posix_fallocate(self.fd, self.journal_allocated, want - self.journal_allocated)
            self.journal_allocated = want
        _write_at(self.fd, data, self.journal_size)
        return len(data)

    def hold_back(self, batches: int) -> bool:
        """Should the scheduled flush wait one more loop turn?  (``--fsync batch`` only.)

        Synchronous clients come back one by one after their replies; an
        fsync started on the first of them serves one client where it could
        have served all.  So while fewer transports have handed over a batch
        than did for the last commit, wait a turn (a poll that does not
        block), for at most half an fsync: a client that does not come back
        costs that much latency once, then the expectation follows it down.
        (PostgreSQL's commit_delay/commit_siblings, made adaptive.)
        """
        if self.fsync != "batch":
            return False
        if batches < self._last_batches:
            now = time.monotonic()
            if self._hold_since is None:
                self._hold_since = now
            if now - self._hold_since < min(self.fsync_seconds / 2, MAX_HOLD_SECONDS):
                return True
        self._last_batches = batches
        self._hold_since = None
        return False

    def _schedule_sync(self) -> None:
        loop = self.d.loop
        if loop is None:
            os.fdatasync(self.fd)
        else:
            self._sync_timer = loop.call_later(self.fsync_interval, self._interval_sync)

    def _interval_sync(self) -> None:
        self._sync_timer = None
        try:
            os.fdatasync(self.fd)
        except OSError:
            log.critical("journal %s: fsync failed; stopping", self.journal_path, exc_info=True)
            logging.shutdown()
            os._exit(EXIT_JOURNAL_FAILED)

    def checkpoint(self) -> None:
        """Snapshot the whole state, then restart the journal empty (a new epoch)."""
        if self.fd >= 0:
            self.commit()
        d = self.d
        epoch = self.epoch + 1
        try:
            self.snapshot_size = snapshot.write(self.snapshot_path, epoch, self.codec, d.store,
                                                meta_state(d))
            tmp = self.journal_path + ".tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            _write_at(fd, file_header(JOURNAL_MAGIC, epoch), 0)
            os.fsync(fd)
            os.rename(tmp, self.journal_path)
            snapshot.fsync_dir(self.dir)
        except OSError:
            if self.fd < 0:
                raise                      # at start-up: the caller reports it
            log.critical("%s: snapshot failed; stopping", self.dir, exc_info=True)
            logging.shutdown()
            os._exit(EXIT_JOURNAL_FAILED)
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = fd
        self.epoch = epoch
        self.seq = 0
        self.journal_size = self.journal_allocated = FILE_HEADER.size
        self.want_snapshot = False
        self.snapshots += 1
        log.info("snapshot epoch %d: %d nodes, %d bytes in %.0f ms", epoch, len(d.store.nodes),
                 self.snapshot_size, snapshot.write.last_seconds * 1000)

    def sync(self) -> None:
        """Everything written so far onto the disk (shutdown, live update)."""
        if self.fd >= 0 and self.fsync != "batch":
            os.fdatasync(self.fd)

    def close(self) -> None:
        """Release the files and the state directory's lock (the journal stays as it is)."""
        for fd in (self.fd, self._lock_fd):
            if fd >= 0:
                os.close(fd)
        self.fd = self._lock_fd = -1

    def statistics(self) -> dict:
        return {"journal-epoch": self.epoch, "journal-bytes": self.journal_size,
                "journal-records": self.records, "snapshot-bytes": self.snapshot_size,
                "snapshots": self.snapshots, "fsync": self.fsync}


def _read(path: str):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _write_at(fd: int, data: bytes, offset: int) -> None:
    """pwrite all of ``data`` at ``offset`` (one call unless the write comes back short)."""
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, offset)
        offset += done
        view = view[done:]
