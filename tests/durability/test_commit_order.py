"""A journaled reply and watch event leave only after their record is in the journal file,
on every path that commits: the scheduled flush, and a lone client's batch committed inside
the C path's run (pump.py ``_commit_now``) with its replies written straight to the
transport.  Each client's write reads the journal file at that moment; the unique value of
each write must already be there.  Run with the state directory on disk and on tmpfs, where
the journal takes no fdatasync (persist.py ``syncs_each_batch``), so watching fdatasync
(test_group_commit.py) cannot tell the order.
"""
import os
import shutil
import subprocess
import tempfile

import pytest

from xenstore_protocol import Decoder, Op, Packet
from xsd.config import Config
from xsd.durability import group_commit
from xsd.durability.persist import open_daemon
from tests.waiting import run_until
from xsd.transport.pump import RequestPump


def fs_type(path: str) -> str:
    """The file system type of ``path`` as coreutils' stat names it (not the code under test)."""
    return subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture(params=["disk", "tmpfs"])
def state_dir(request, tmp_path):
    if request.param == "disk":
        if fs_type(str(tmp_path)) == "tmpfs":
            pytest.skip("the test's temporary directory is on tmpfs here")
        yield str(tmp_path)
        return
    if not os.path.isdir("/dev/shm") or fs_type("/dev/shm") != "tmpfs":
        pytest.skip("no tmpfs at /dev/shm")
    path = tempfile.mkdtemp(prefix="xsd-test-", dir="/dev/shm")
    yield path
    shutil.rmtree(path, ignore_errors=True)



class Client:
    """A transport's write that notes, for each packet it is handed, the journal file as it was
    at that write."""

    def __init__(self, journal_path: str):
        self.journal_path = journal_path
        self.decoder = Decoder()
        self.seen = []                # (packet, the journal file's bytes when it was written)

    def write(self, data: bytes) -> None:
        with open(self.journal_path, "rb") as f:
            journal = f.read()
        self.seen.extend((packet, journal) for packet in self.decoder.feed(bytes(data)))

    def packets(self) -> list:
        return [packet for packet, _ in self.seen]



def journaled_daemon(state_dir: str, monkeypatch, loop):
    monkeypatch.setattr(group_commit, "MIN_FSYNC_HELD", 1.0)   # every commit cheap, on disk too
    d = open_daemon(Config(rundir=state_dir, state_dir=state_dir))
    if d.fastpath is None:
        d.persist.close()
        pytest.skip("the C request path runs on the C store only")
    d.persist.serve_on(loop)
    return d, RequestPump(d, loop, d.persist)


def write(i: int, path: bytes, value: bytes, tx: int = 0) -> bytes:
    return Packet(Op.WRITE, i, tx, path + b"\0" + value).encode()


def count_flushes(d, monkeypatch) -> list:
    flushes = []
    real = d.flush

    def flush():
        flushes.append(1)
        real()
    monkeypatch.setattr(d, "flush", flush)
    return flushes


def test_a_lone_clients_writes_are_answered_in_their_callback_after_their_record(
        state_dir, monkeypatch, loop):
    d, pump = journaled_daemon(state_dir, monkeypatch, loop)
    client = Client(d.persist.journal_path)
    s = d.open_session(client.write, name="alone", direct_replies=True)
    assert pump.serve_bytes(s, write(1, b"/order/first", b"value-first")) == b""
    run_until(loop, lambda: client.seen)          # the first waits for a scheduled commit
    flushes = count_flushes(d, monkeypatch)
    for i in range(2, 12):                        # creates, then overwrites of the same nodes
        path = b"/order/k%d" % (i % 5)
        assert pump.serve_bytes(s, write(i, path, b"value-%d" % i)) == b""
        packet, journal = client.seen[-1]
        assert packet == Packet(Op.WRITE, i, 0, b"OK\0")      # answered in its callback
        assert b"value-%d" % i in journal, f"reply {i} left before its record"
    assert flushes == []        # written by the C path itself, the record first (_commit_now)
    d.persist.close()
    again = open_daemon(Config(rundir=state_dir, state_dir=state_dir))
    assert [again.store.get("/order/k%d" % k).value for k in range(5)] == \
        [b"value-10", b"value-11", b"value-7", b"value-8", b"value-9"]
    again.persist.close()


def test_a_lone_clients_watch_events_leave_after_the_record(state_dir, monkeypatch, loop):
    d, pump = journaled_daemon(state_dir, monkeypatch, loop)
    writer = Client(d.persist.journal_path)
    watcher = Client(d.persist.journal_path)
    w = d.open_session(writer.write, name="writer", direct_replies=True)
    v = d.open_session(watcher.write, name="watcher", direct_replies=True)
    d.handle(v, Packet(Op.WATCH, 1, 0, b"/order/watched\0tok\0"))   # a first WATCH: Python's
    d.flush()
    assert len(watcher.seen) == 2                             # the reply and the first event
    for i in range(1, 8):
        assert pump.serve_bytes(w, write(i, b"/order/watched", b"value-%d" % i)) == b""
        run_until(loop, lambda: len(writer.seen) == i and len(watcher.seen) == 2 + i)
    assert [p for p in writer.packets()] == [Packet(Op.WRITE, i, 0, b"OK\0") for i in range(1, 8)]
    for i, (packet, journal) in enumerate(writer.seen, 1):
        assert b"value-%d" % i in journal, f"reply {i} left before its record"
    for i, (packet, journal) in enumerate(watcher.seen[2:], 1):
        assert packet == Packet(Op.WATCH_EVENT, 0, 0, b"/order/watched\0tok\0")
        assert b"value-%d" % i in journal, f"event {i} left before its record"
    d.persist.close()


def test_a_lone_clients_transaction_is_answered_in_its_callbacks_after_its_record(
        state_dir, monkeypatch, loop):
    """START and the WRITE inside change nothing in the store: their replies leave at once,
    no record; END's commit is recorded before END's reply leaves."""
    d, pump = journaled_daemon(state_dir, monkeypatch, loop)
    client = Client(d.persist.journal_path)
    s = d.open_session(client.write, name="alone", direct_replies=True)
    assert pump.serve_bytes(s, write(1, b"/order/first", b"value-first")) == b""
    run_until(loop, lambda: client.seen)
    flushes = count_flushes(d, monkeypatch)
    for n in range(3):
        records = d.persist.records
        assert pump.serve_bytes(s, Packet(Op.TRANSACTION_START, 10 * n + 2, 0, b"\0").encode()) == b""
        start = client.seen[-1][0]
        assert (start.op, start.req_id) == (Op.TRANSACTION_START, 10 * n + 2)
        tx = int(start.payload[:-1])
        value = b"value-in-tx-%d" % n
        assert pump.serve_bytes(s, write(10 * n + 3, b"/order/tx", value, tx)) == b""
        assert client.seen[-1][0] == Packet(Op.WRITE, 10 * n + 3, tx, b"OK\0")
        assert d.persist.records == records          # nothing for the journal yet
        end = Packet(Op.TRANSACTION_END, 10 * n + 4, tx, b"T\0").encode()
        assert pump.serve_bytes(s, end) == b""
        packet, journal = client.seen[-1]
        assert packet == Packet(Op.TRANSACTION_END, 10 * n + 4, tx, b"OK\0")
        assert value in journal, "END's reply left before its record"
        assert d.persist.records == records + 1
    assert "TRANSACTION_END:3" in d.fastpath.answered([s])     # the engine committed them
    assert flushes == []
    d.persist.close()
    again = open_daemon(Config(rundir=state_dir, state_dir=state_dir))
    assert again.store.get("/order/tx").value == b"value-in-tx-2"
    again.persist.close()


def test_a_record_is_fsynced_on_disk_and_not_on_tmpfs(state_dir, monkeypatch):
    """--fsync batch: one fdatasync per record on a disk; none on tmpfs, where it does nothing
    (the record in the page cache is all there is), the record written all the same."""
    syncs = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (syncs.append(fd), real(fd)))
    d = open_daemon(Config(rundir=state_dir, state_dir=state_dir))
    out = []
    s = d.open_session(out.append, name="c")
    records = d.persist.records
    for i in range(3):
        d.handle(s, Packet(Op.WRITE, i, 0, b"/sync/k\0value-%d" % i))
        d.flush()
    assert d.persist.records == records + 3
    with open(d.persist.journal_path, "rb") as f:
        assert b"value-2" in f.read()
    on_tmpfs = fs_type(state_dir) == "tmpfs"
    assert d.persist.syncs_each_batch == (not on_tmpfs)
    assert syncs.count(d.persist.fd) == (0 if on_tmpfs else 3)
    d.persist.close()


def test_records_past_the_space_allocated_ahead_and_across_a_snapshot_replay_whole(state_dir):
    """The journal grows by PREALLOC_BYTES at a time (on tmpfs: mapped anew each time) and
    is replaced by an empty one at a snapshot: every acknowledged write is found again."""
    config = Config(rundir=state_dir, state_dir=state_dir)
    d = open_daemon(config)
    out = []
    s = d.open_session(out.append, name="c")
    big = 3000                                   # about 3 MiB of records: two growths
    for i in range(1000):
        if i == 600:
            d.persist.checkpoint()               # a snapshot, a new journal (and mapping)
        d.handle(s, Packet(Op.WRITE, i, 0, b"/grow/k%d\0" % (i % 700) + b"%06d" % i * (big // 6)))
        d.flush()
    assert len(Decoder().feed(b"".join(out))) == 1000
    d.persist.close()
    again = open_daemon(config)
    for k in range(700):
        last = max(i for i in range(1000) if i % 700 == k)
        assert again.store.get("/grow/k%d" % k).value == b"%06d" % last * (big // 6)
    again.persist.close()
