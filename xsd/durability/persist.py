"""Durability: the daemon's state on disk, as a snapshot plus a journal of what followed.

Start-up (``Opener.open``, called by ``Daemon.__init__``; ``open_daemon`` builds
both): load ``xsd.snapshot``,
replay ``xsd.journal`` on top, drop a torn last record (logged), refuse a
damaged one with a sound record after it; then write a fresh snapshot and
start an empty journal (a new *epoch*), so every run begins clean.

Running: a listener of the core (``xsd.core.daemon.Listener``): mutators
note what they change (the store's change log, plus ``state_changed`` for domains,
quotas and special permissions, and guests' watches); ``commit``, called by
``Daemon.flush`` before any output is handed on, turns all of it
into one journal record (built in C on the C store: journal.py ``record_builder``):
one write and (``--fsync batch``) one fsync for
every request of the batch: group commit.  The journal is written at
offsets into space allocated ahead (``PREALLOC_BYTES`` at a time): an
fdatasync that need not also commit a new file size costs about a third
less; replay takes the zeros after the last record as the end.  (Two
designs that overlap the fsync with the next batch measured slower here: a
Python thread, and a C writer thread with the replies held until it reports
the batch durable.  Both make batches smaller, and on two cores each extra
fdatasync's CPU costs more than the overlap saves; docs/benchmarks.md.)  Once the journal outgrows ``journal_max_bytes`` (or twice the snapshot),
a new snapshot compacts it: written between requests while serving
(``start_snapshot``, below), at once at start-up (``checkpoint``).

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
import mmap
import os
import shutil
import time

from . import snapshot
from ..core.daemon import Daemon
from .group_commit import MAX_HOLD_SECONDS, GroupCommit  # noqa: F401  (MAX_HOLD_SECONDS: tests)
from .guest_watches import GuestWatches
from .journal import (BATCH, FILE_HEADER, JOURNAL_MAGIC, Codec, CorruptError, StateError,
                      file_header, read_file_header, read_records, record_builder)
from .state import finish_load, load_state, meta_loader, meta_state  # noqa: F401  (meta_state: tests)

log = logging.getLogger("xsd.persist")

SNAPSHOT_NAME = "xsd.snapshot"
JOURNAL_NAME = "xsd.journal"
NEXT_JOURNAL_NAME = "xsd.journal.next"   # the journal after a snapshot being written
LOCK_NAME = "xsd.lock"
EXIT_JOURNAL_FAILED = 70          # EX_SOFTWARE: the journal cannot be trusted any more
PREALLOC_BYTES = 1 << 20          # journal space allocated ahead of the writes
STEP_SECONDS = 0.005              # a snapshot being written: one step per this, at least
RAM_FILE_SYSTEMS = ("tmpfs", "ramfs")   # where fdatasync does nothing: syncs_each_batch


def open_daemon(config, host=None, handoff=None) -> Daemon:
    """A daemon with the saved state of ``config.state_dir`` (and/or a live update's
    ``handoff``), journaling from then on when ``config.state_dir`` is set.
    Raises StateError when the saved state cannot be trusted."""
    return Daemon(config, host, Opener(config, handoff))


class Opener:
    """The ``durability`` a Daemon is built with: fills it at start, and journals after."""

    def __init__(self, config, handoff=None):
        self.config = config
        self.handoff = handoff

    def open(self, d):
        """Fill daemon ``d`` (live-update hand-off, else snapshot and journal, else the
        initial tree); return the ``Persistence`` listening to it when journaling, else None."""
        config, handoff = self.config, self.handoff
        guest_watches = GuestWatches() if config.state_dir else None
        if handoff is not None:
            load_state(d, handoff.data, handoff.offset, handoff.name, guest_watches)
        if not config.state_dir:
            if handoff is None:
                d.init_tree()
            return None
        persist = Persistence(d, config, guest_watches)
        try:
            if handoff is not None:
                persist.epoch = persist.existing_epoch()   # numbering goes on past what is on disk
            elif not persist.load():
                d.init_tree()
            persist.checkpoint()
        except BaseException:
            persist.close()
            raise
        d.add_listener(persist, track_changes=True)
        return persist


# -- files ----------------------------------------------------------------------

class Persistence:
    """The state directory's files: lock, snapshot, journal and their epochs; the core's
    journaling listener."""

    def __init__(self, d, config, guest_watches=None):
        self.d = d
        self.guest_watches = guest_watches if guest_watches is not None else GuestWatches()
        self.dir = config.state_dir
        self.fsync = config.fsync
        self.fsync_interval = config.fsync_interval
        self.journal_max = config.journal_max_bytes
        self.salvage = config.journal_salvage
        self.snapshot_path = os.path.join(self.dir, SNAPSHOT_NAME)
        self.journal_path = os.path.join(self.dir, JOURNAL_NAME)
        self.next_journal_path = os.path.join(self.dir, NEXT_JOURNAL_NAME)
        self.codec = Codec()
        self.recorder = record_builder(d.store, self.codec)   # builds each batch's record
        self.fd = -1
        self.in_ram = False           # the journal's file system keeps it in memory only
        self._map = None              # in_ram: a shared mapping of the journal (_append)
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
        self.loop = None              # once serving (serve_on): timers, a thread for fsync
        self.job = None               # snapshot.Writer of a snapshot being written meanwhile
        self.job_syncing = False      # its writing is done; its fsync runs in a thread
        self._step_timer = None
        self.snapshot_steps = 0       # statistics: steps of incremental snapshots
        self.snapshot_steps_charged = 0    # of which run in the turn of the client charged
        self.fsync_seconds = 0.0      # recent fdatasync duration (moving average)
        self.last_snapshot_seconds = 0.0   # statistics: the last snapshot, start to installed
        self.group_commit = GroupCommit(self)
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
        following = _read(self.next_journal_path)
        if snap is None:
            if journal is None and following is None:
                log.info("%s: no saved state: starting with the initial tree", self.dir)
                return False
            raise CorruptError(f"{self.journal_path} exists but {self.snapshot_path} does not: "
                               "the journal cannot be replayed without the snapshot it follows")
        started = time.monotonic()
        d = self.d
        self.epoch = snapshot.read_epoch(snap, self.snapshot_path)
        metas = []
        on_meta = meta_loader(metas, self.guest_watches)
        count = snapshot.load(snap, snapshot.HEADER_SIZE, self.snapshot_path, self.codec, d.store,
                              on_meta)
        replayed = 0
        expected = self.epoch
        if journal is None:
            log.warning("%s missing: state as of the snapshot only", self.journal_path)
        else:
            replayed, used = self._replay(self.journal_path, journal, on_meta, expected)
            expected += used
        if following is not None:
            # A snapshot of epoch E+1 was being written while the journal went on in the
            # next journal (start_snapshot): replayed after the journal of epoch E, or after
            # that snapshot when it was renamed in before the crash.
            replayed += self._replay(self.next_journal_path, following, on_meta, expected)[0]
        if metas:
            d.from_state(metas[-1])
        # Watches of a domain not introduced (any more): nothing to give back.
        self.guest_watches.keep_only(d.domains.is_introduced)
        finish_load(d, self.journal_path)
        log.info("loaded %s: epoch %d, %d nodes; replayed %d journal records; %d nodes now (%.0f ms)",
                 self.dir, self.epoch, count, replayed, len(d.store),
                 (time.monotonic() - started) * 1000)
        return True

    def existing_epoch(self) -> int:
        """The highest epoch in the files' headers (0 without files), whatever follows them."""
        epoch = 0
        for path, magic in ((self.snapshot_path, snapshot.SNAPSHOT_MAGIC),
                            (self.journal_path, JOURNAL_MAGIC),
                            (self.next_journal_path, JOURNAL_MAGIC)):
            try:
                with open(path, "rb") as f:
                    epoch = max(epoch, read_file_header(f.read(FILE_HEADER.size), magic, path))
            except (OSError, CorruptError):
                pass
        return epoch

    def _replay(self, name: str, journal: bytes, on_meta, expected: int):
        """Replay ``journal`` if it is of epoch ``expected``: ``(records, 1)``; ``(0, 0)`` if
        older (already in the snapshot).  ``self.epoch`` becomes the highest epoch loaded."""
        epoch = read_file_header(journal, JOURNAL_MAGIC, name)
        if epoch < expected:
            log.info("%s: epoch %d, already in the snapshot (epoch %d): skipped", name, epoch, expected)
            return 0, 0
        if epoch > expected:
            raise CorruptError(f"{name}: epoch {epoch} follows a snapshot of epoch {epoch - 1}, "
                               f"but {self.snapshot_path} has epoch {self.epoch}")
        self.epoch = epoch
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
            # Not a torn tail: every record from the damage on was written whole, and
            # acknowledged, before it was damaged.
            log.error("%s: --journal-salvage dropped the damaged record at offset %d and every "
                      "record after it (%d bytes): acknowledged changes, now lost",
                      name, end, torn)
            torn = 0
        store = self.d.store
        apply = self.codec.apply
        on_watch = self.guest_watches.replay
        for payload in payloads:
            apply(store, payload, BATCH.size, on_meta, on_watch)
            store.next_gen = max(store.next_gen, BATCH.unpack_from(payload)[1])
        if torn:
            log.warning("%s: dropped a torn last record: %d bytes at offset %d (a batch cut short "
                        "by the crash, never acknowledged)", name, torn, end)
        return len(payloads), 1

    # -- the core's listener ------------------------------------------------------
    def watch_added(self, domid: int, path: str, token: bytes, relative: bool) -> None:
        self.guest_watches.added(domid, path, token, relative)

    def watch_removed(self, domid: int, path: str, token: bytes) -> None:
        self.guest_watches.removed(domid, path, token)

    def watches_cleared(self, domid: int) -> None:
        self.guest_watches.cleared(domid)

    def state_changed(self) -> None:
        self.meta_dirty = True

    def after_output(self) -> None:
        if self.want_snapshot and self.job is None:
            if self.loop is None:
                self.checkpoint()           # in-process, no loop: all at once
            else:
                self.start_snapshot()

    def check(self, d) -> list:
        return self.guest_watches.differences(d)

    # -- running --------------------------------------------------------------
    def commit(self) -> None:
        """Journal the batch: the store's change log (taken here: ``Daemon.flush``, and a
        snapshot starting), guests' watches and META in one record; one write, and one
        fsync with ``--fsync batch``."""
        watches = self.guest_watches
        try:
            tail = b""
            if watches.pending or self.meta_dirty:
                parts = []
                if watches.pending:
                    watches.encode(self.codec, parts)   # before META, which holds the result
                if self.meta_dirty:
                    self.codec.meta(parts, meta_state(self.d, watches))
                tail = b"".join(parts)
            record = self.recorder.record(self.seq + 1, tail)
            if record is None:
                return
            size = self._append(record)
            if self.syncs_each_batch:
                started = time.monotonic()
                os.fdatasync(self.fd)
                self.fsync_seconds += (time.monotonic() - started - self.fsync_seconds) / 8
            elif self.fsync == "interval" and self._sync_timer is None and not self.in_ram:
                self._schedule_sync()
        except BaseException:
            log.critical("journal %s: cannot record a batch; stopping so that nothing unrecorded "
                         "is acknowledged (restart replays what is on disk)", self.journal_path,
                         exc_info=True)
            logging.shutdown()
            os._exit(EXIT_JOURNAL_FAILED)
        self.seq += 1
        self.records += 1
        self.meta_dirty = False
        self.journal_size += size
        if self.journal_size > max(self.journal_max, 2 * self.snapshot_size):
            self.want_snapshot = True

    def _append(self, data: bytes) -> int:
        """Write ``data`` at the journal's end, allocating ahead when it reaches the allocated
        end (``posix_fallocate``; glibc writes zeros where the file system cannot).  On a
        file system in memory (``in_ram``) the write is a copy into a shared mapping of the
        file's allocated space (``_map``): the mapping is the file's page cache itself, so
        the record is in the file once the copy is done, as after a pwrite, without the
        system call (and its update of the file's times) per record."""
        start = self.journal_size
        end = start + len(data)
        if end > self.journal_allocated:
            want = end + PREALLOC_BYTES
            os.posix_fallocate(self.fd, self.journal_allocated, want - self.journal_allocated)
            self.journal_allocated = want
            if self.in_ram:
                self._remap()
        if self._map is not None:
            self._map[start:end] = data
        else:
            _write_at(self.fd, data, start)
        return len(data)

    def _remap(self) -> None:
        """Map the journal's allocated space (all of it: pages are touched only as records
        reach them), in place of the smaller mapping before it.  Allocated first, so no copy
        into it can fault past the file's end or find the file system full."""
        self._unmap()
        self._map = mmap.mmap(self.fd, self.journal_allocated)

    def _unmap(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None

    @property
    def syncs_each_batch(self) -> bool:
        """An fdatasync after each record: ``--fsync batch``, unless the state directory is on a
        file system that keeps its files in memory only (tmpfs, ramfs: /var/run/xenstored on a
        Xen host).  There the record in the page cache is all the durability there is, and
        fdatasync returns without doing anything (the kernel's noop_fsync): the syscall, two
        clock reads, and the clock's word on whether a commit is cheap (``group_commit.py``)
        are saved, and nothing else changes."""
        return self.fsync == "batch" and not self.in_ram

    def pending(self) -> bool:
        """Something for the next record: the store's changes, META, guests' watches."""
        return self.meta_dirty or bool(self.guest_watches.pending) or self.d.store.has_changes()

    def hold_back(self, batches: int) -> bool:
        """Group commit's policy (``group_commit.py``)."""
        return self.group_commit.hold_back(batches)

    def commit_cheap(self) -> bool:
        """Group commit's policy (``group_commit.py``): a lone batch need not wait a turn."""
        return self.group_commit.cheap()

    def serve_on(self, loop) -> None:
        """Serving: timers (``--fsync interval``, snapshot steps) on ``loop``'s ``call_later``,
        a snapshot's fsync in its ``run_in_executor`` thread, so none stops the requests."""
        self.loop = loop

    def _schedule_sync(self) -> None:
        if self.loop is None:
            os.fdatasync(self.fd)
        else:
            self._sync_timer = self.loop.call_later(self.fsync_interval, self._interval_sync)

    def _interval_sync(self) -> None:
        self._sync_timer = None
        try:
            os.fdatasync(self.fd)
        except OSError:
            log.critical("journal %s: fsync failed; stopping", self.journal_path, exc_info=True)
            logging.shutdown()
            os._exit(EXIT_JOURNAL_FAILED)

    def checkpoint(self) -> None:
        """Snapshot the whole state at once, then restart the journal empty (a new epoch).
        (At start-up, and in-process without a loop; a serving daemon uses ``start_snapshot``.)"""
        self._abandon_job()
        if self.fd >= 0:
            self.commit()
        d = self.d
        epoch = self.epoch + 1
        try:
            tree = d.store.freeze()
            try:
                self.snapshot_size = snapshot.write(self.snapshot_path, epoch, self.codec, tree,
                                                    meta_state(d, self.guest_watches))
            finally:
                d.store.thaw()
            fd = self._new_journal(self.journal_path, epoch)
            # A next journal left by an unfinished snapshot is older now: gone.
            _unlink(self.next_journal_path)
        except OSError:
            if self.fd < 0:
                raise                      # at start-up: the caller reports it
            log.critical("%s: snapshot failed; stopping", self.dir, exc_info=True)
            logging.shutdown()
            os._exit(EXIT_JOURNAL_FAILED)
        self._switch_journal(fd, epoch)
        self.snapshots += 1
        self.last_snapshot_seconds = snapshot.write.last_seconds
        log.info("snapshot epoch %d: %d nodes, %d bytes in %.0f ms", epoch, len(d.store),
                 self.snapshot_size, self.last_snapshot_seconds * 1000)

    def _new_journal(self, path: str, epoch: int) -> int:
        """An empty journal of ``epoch`` at ``path``, durably in place; its descriptor."""
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)   # RDWR: _remap
        try:
            _write_at(fd, file_header(JOURNAL_MAGIC, epoch), 0)
            os.fsync(fd)
            os.rename(tmp, path)
            snapshot.fsync_dir(self.dir)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _switch_journal(self, fd: int, epoch: int) -> None:
        self._unmap()
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = fd
        self.in_ram = _fs_in_ram(fd)
        self.epoch = epoch
        self.seq = 0
        self.journal_size = self.journal_allocated = FILE_HEADER.size
        self.want_snapshot = False

    # -- snapshots written between requests (issue 12, item 9) ----------------------------
    #
    # A snapshot of 300,000 nodes takes about a second to write; written at once, it stops
    # every client for that long.  Instead: at one instant (one loop callback) the batch is
    # committed, the store frozen (its ``freeze``: a dump, or copy on write), and the journal
    # goes on in a new file of epoch E+1, NEXT_JOURNAL_NAME.  The snapshot of E+1 (the tree as frozen) is
    # then written a record at a time (snapshot_step): from a timer every STEP_SECONDS, and in
    # the turn of the clients whose writes made the journal grow (the request pump charges
    # them, pump.py), fsynced in a thread, and renamed into place; then the next journal is
    # renamed over the journal.  A crash anywhere leaves files the loader understands: the
    # snapshot of E with the journal of E and the next journal of E+1, or the snapshot of E+1
    # with the (skipped) journal of E and the next journal of E+1, or the snapshot and journal
    # of E+1.

    def start_snapshot(self) -> None:
        self.commit()
        d = self.d
        epoch = self.epoch + 1
        try:
            if self.fsync != "batch":
                os.fdatasync(self.fd)    # the journal of E whole on disk before its successor
            fd = self._new_journal(self.next_journal_path, epoch)
        except OSError:
            log.critical("%s: cannot start a snapshot; stopping", self.dir, exc_info=True)
            logging.shutdown()
            os._exit(EXIT_JOURNAL_FAILED)
        tree = d.store.freeze()
        try:
            self.job = snapshot.Writer(self.snapshot_path, epoch, self.codec, tree,
                                       meta_state(d, self.guest_watches))
        except BaseException:
            d.store.thaw()
            os.close(fd)
            raise
        self._switch_journal(fd, epoch)
        self._step_timer = self.loop.call_later(STEP_SECONDS, self._timer_step)
        if d.fastpath is not None:
            # Every socket's batches go through the request pump again (none is answered
            # by the C poller alone), which charges the snapshot to those who made it due.
            d.fastpath.state_changed()

    @property
    def snapshot_running(self) -> bool:
        """A snapshot is being written and has records left to write."""
        return self.job is not None and not self.job_syncing

    def snapshot_step(self, charged: bool = False) -> None:
        """Write one record of the snapshot being written, if any; after the last, fsync it
        in a thread.  ``charged``: run in the turn of a client that caused it (statistics)."""
        job = self.job
        if job is None or self.job_syncing:
            return
        try:
            more = job.step()
        except OSError:
            log.critical("%s: snapshot failed; stopping", self.dir, exc_info=True)
            logging.shutdown()
            os._exit(EXIT_JOURNAL_FAILED)
        self.snapshot_steps += 1
        if charged:
            self.snapshot_steps_charged += 1
        if not more:
            self.job_syncing = True
            future = self.loop.run_in_executor(None, self._install, job)
            future.add_done_callback(lambda f: self._installed(job, f))

    def _timer_step(self) -> None:
        self._step_timer = None
        self.snapshot_step()
        if self.snapshot_running:
            self._step_timer = self.loop.call_later(STEP_SECONDS, self._timer_step)

    def _install(self, job) -> int:
        """In a thread (only files no request touches; the journal's descriptor stays valid
        across the rename): fsync the snapshot, rename it in, then the next journal."""
        job.sync()
        size = job.install()
        os.rename(self.next_journal_path, self.journal_path)
        snapshot.fsync_dir(self.dir)
        return size

    def _installed(self, job, future) -> None:
        if job is not self.job:
            return                                   # abandoned meanwhile
        try:
            if future.cancelled():
                raise OSError("snapshot installation cancelled")
            size = future.result()
        except BaseException:
            log.critical("%s: snapshot failed; stopping", self.dir, exc_info=True)
            logging.shutdown()
            os._exit(EXIT_JOURNAL_FAILED)
        self.d.store.thaw()
        self.job = None
        self.job_syncing = False
        self.snapshot_size = size
        self.snapshots += 1
        self.last_snapshot_seconds = time.monotonic() - job.started
        log.info("snapshot epoch %d: %d nodes, %d bytes in %.0f ms, written between requests "
                 "in %d steps", self.epoch, len(self.d.store), size,
                 self.last_snapshot_seconds * 1000, job.steps)

    def _abandon_job(self) -> None:
        job = self.job
        if job is None:
            return
        self.job = None
        self.job_syncing = False
        job.abandon()
        self.d.store.thaw()
        if self._step_timer is not None:
            self._step_timer.cancel()
            self._step_timer = None

    def sync(self) -> None:
        """Everything written so far onto the disk (shutdown, live update)."""
        if self.fd >= 0 and self.fsync != "batch":
            os.fdatasync(self.fd)

    def close(self) -> None:
        """Release the files and the state directory's lock (the journal stays as it is)."""
        self._abandon_job()
        self._unmap()
        for fd in (self.fd, self._lock_fd):
            if fd >= 0:
                os.close(fd)
        self.fd = self._lock_fd = -1

    def statistics(self) -> dict:
        return {"journal-epoch": self.epoch, "journal-bytes": self.journal_size,
                "journal-records": self.records, "snapshot-bytes": self.snapshot_size,
                "snapshots": self.snapshots, "snapshot-steps": self.snapshot_steps,
                "snapshot-steps-charged": self.snapshot_steps_charged, "fsync": self.fsync}


def _fs_in_ram(fd: int) -> bool:
    """Is the journal (descriptor ``fd``) on a file system that keeps its files in memory
    only (``RAM_FILE_SYSTEMS``)?  The kernel says which mount the descriptor is on
    (/proc/self/fdinfo: ``mnt_id``) and that mount's type (/proc/self/mountinfo: after the
    " - "); where either cannot be read, no: an fdatasync too many is only slower."""
    try:
        with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as f:
            mount_id = next(line.split()[1] for line in f if line.startswith("mnt_id:"))
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if fields and fields[0] == mount_id and "-" in fields:
                    return fields[fields.index("-") + 1] in RAM_FILE_SYSTEMS
    except (OSError, StopIteration, IndexError):
        pass
    return False


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


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
