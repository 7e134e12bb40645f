"""Group commit, in-process on a real event loop: one record and one fsync per loop turn, before any output."""
import asyncio
import os

import pytest

from xenstore_protocol import Decoder, Op, Packet
from xsd.config import Config
from xsd.durability.persist import open_daemon
from tests.waiting import run_until
from xsd.transport.pump import RequestPump


class WatchedDisk:
    """os.fdatasync that notes, at each call, what the clients had received by then."""

    def __init__(self, monkeypatch, outs):
        self.seen = []
        real = os.fdatasync

        def fdatasync(fd):
            self.seen.append([len(out) for out in outs])
            real(fd)
        monkeypatch.setattr(os, "fdatasync", fdatasync)




def replies(out: list) -> list:
    return Decoder().feed(b"".join(out))


def test_nothing_is_handed_to_a_client_before_the_fsync(tmp_path, monkeypatch, loop):
    d = open_daemon(Config(rundir=str(tmp_path), state_dir=str(tmp_path)))
    writer_out, watcher_out = [], []
    disk = WatchedDisk(monkeypatch, (writer_out, watcher_out))
    writer = d.open_session(writer_out.append, name="writer")
    watcher = d.open_session(watcher_out.append, name="watcher")
    d.handle(watcher, Packet(Op.WATCH, 1, 0, b"/gc\0tok\0"))
    d.flush()
    watcher_out.clear()
    d.handle(writer, Packet(Op.WRITE, 2, 0, b"/gc/x\0new"))
    d.flush()
    assert disk.seen == [[0, 0]]                  # the reply and the watch event came after it
    assert replies(writer_out) == [Packet(Op.WRITE, 2, 0, b"OK\0")]
    assert replies(watcher_out) == [Packet(Op.WATCH_EVENT, 0, 0, b"/gc/x\0tok\0")]
    d.persist.close()


def test_replies_leave_at_once_when_nothing_is_waiting_for_the_disk(tmp_path, loop):
    d = open_daemon(Config(rundir=str(tmp_path), state_dir=str(tmp_path)))
    out = []
    s = d.open_session(out.append, name="reader")
    d.handle(s, Packet(Op.READ, 1, 0, b"/tool/xenstored\0"))
    d.flush()
    assert replies(out) == [Packet(Op.READ, 1, 0, b"")]
    d.persist.close()


def test_one_record_and_one_fsync_per_loop_turn(tmp_path, monkeypatch, loop):
    d = open_daemon(Config(rundir=str(tmp_path), state_dir=str(tmp_path)))
    pump = RequestPump(d, loop, d.persist)
    outs = [[] for _ in range(8)]
    disk = WatchedDisk(monkeypatch, outs)
    sessions = [d.open_session(out.append, name=f"c{i}") for i, out in enumerate(outs)]
    records = d.persist.records

    def turn():
        # What eight connections' data_received do in one loop turn.
        for i, s in enumerate(sessions):
            d.handle(s, Packet(Op.WRITE, 1, 0, b"/gc/k%d\0v" % i))
            pump.request_flush()

    loop.call_soon(turn)
    run_until(loop, lambda: all(outs))
    assert d.persist.records == records + 1
    assert disk.seen == [[0] * 8]                 # one fsync, before any reply left
    assert all(replies(out) == [Packet(Op.WRITE, 1, 0, b"OK\0")] for out in outs)
    d.persist.close()


def test_no_persist_flushes_at_once_without_a_loop_turn(tmp_path, loop):
    d = open_daemon(Config(rundir=str(tmp_path)))
    pump = RequestPump(d, loop, d.persist)
    out = []
    s = d.open_session(out.append, name="c")
    d.handle(s, Packet(Op.WRITE, 1, 0, b"/gc\0v"))
    pump.request_flush()
    assert replies(out) == [Packet(Op.WRITE, 1, 0, b"OK\0")]
    assert d.persist is None


def test_hold_back_waits_for_the_clients_of_the_last_commit_within_half_an_fsync(tmp_path, monkeypatch):
    from xsd.durability import persist
    d = open_daemon(Config(rundir=str(tmp_path), state_dir=str(tmp_path)))
    p = d.persist
    p.fsync_seconds = 0.010
    now = [100.0]
    monkeypatch.setattr(persist.time, "monotonic", lambda: now[0])
    assert not p.hold_back(16)       # nothing known yet: commit; 16 clients expected next time
    assert p.hold_back(3)            # 3 of them are back: wait a turn
    now[0] += 0.0015
    assert p.hold_back(15)
    now[0] += 0.001                  # past MAX_HOLD_SECONDS (2 ms, under half the fsync)
    assert not p.hold_back(15)       # commit with 15; 15 expected next time
    assert not p.hold_back(15)
    assert not p.hold_back(20)
    monkeypatch.setattr(p, "fsync", "never")
    assert not p.hold_back(1)        # only worth it where an fsync is saved
    d.persist.close()


def test_hold_back_never_waits_when_an_fsync_costs_less_than_a_loop_turn(tmp_path):
    d = open_daemon(Config(rundir=str(tmp_path), state_dir=str(tmp_path)))
    p = d.persist
    p.fsync_seconds = 0.010
    assert not p.hold_back(16)
    assert p.hold_back(3)                # a slow fsync: worth a turn for the rest
    p.fsync_seconds = 25e-6              # under MIN_FSYNC_HELD (tmpfs: ~1 us)
    assert not p.hold_back(3)            # cheaper than the held turn: commit now
    assert not p.hold_back(1)
    d.persist.close()


def test_a_read_answered_in_c_leaves_at_once_only_when_nothing_waits_for_the_disk(
        tmp_path, monkeypatch, loop):
    d = open_daemon(Config(rundir=str(tmp_path), state_dir=str(tmp_path)))
    if d.fastpath is None:
        pytest.skip("the C request path runs on the C store only")
    pump = RequestPump(d, loop, d.persist)
    writer_out, reader_out = [], []
    disk = WatchedDisk(monkeypatch, (writer_out, reader_out))
    writer = d.open_session(writer_out.append, name="writer", direct_replies=True)
    reader = d.open_session(reader_out.append, name="reader", direct_replies=True)
    read = Packet(Op.READ, 7, 0, b"/gc/x\0").encode()
    assert pump.serve_bytes(writer, Packet(Op.WRITE, 1, 0, b"/gc/x\0new").encode()) == b""
    assert pump.serve_bytes(reader, read) == b""
    # The write is not on disk yet: the read, which shows it, waits with its reply.
    assert (writer_out, reader_out) == ([], [])
    run_until(loop, lambda: writer_out and reader_out)
    assert disk.seen == [[0, 0]]
    assert replies(reader_out) == [Packet(Op.READ, 7, 0, b"new")]
    # Everything is on disk: a read goes out at once, without a loop turn or a record.
    records = d.persist.records
    assert pump.serve_bytes(reader, read) == b""
    assert replies(reader_out)[1:] == [Packet(Op.READ, 7, 0, b"new")]
    assert d.persist.records == records and len(disk.seen) == 1
    d.persist.close()


def test_with_nothing_for_the_journal_a_batch_flushes_at_once(tmp_path, monkeypatch, loop):
    d = open_daemon(Config(rundir=str(tmp_path), state_dir=str(tmp_path)))
    pump = RequestPump(d, loop, d.persist)
    out = []
    disk = WatchedDisk(monkeypatch, (out,))
    s = d.open_session(out.append, name="c")
    records = d.persist.records
    d.handle(s, Packet(Op.TRANSACTION_START, 1, 0, b"\0"))     # answered in Python, no change
    pump.request_flush()
    assert [p.op for p in replies(out)] == [Op.TRANSACTION_START]   # no loop turn waited for
    assert d.persist.records == records and disk.seen == []
    d.handle(s, Packet(Op.WRITE, 2, 0, b"/gc\0v"))             # a change: group commit again
    pump.request_flush()
    assert len(replies(out)) == 1
    run_until(loop, lambda: len(replies(out)) == 2)
    assert d.persist.records == records + 1 and disk.seen == [[len(out) - 1]]
    d.persist.close()


def _cheap_commits(monkeypatch, cheap: bool):
    """Every commit cheap (a tmpfs fsync) or dear (a disk's), whatever this disk's is."""
    from xsd.durability import group_commit
    monkeypatch.setattr(group_commit, "MIN_FSYNC_HELD", 1.0 if cheap else 0.0)


def test_a_lone_client_is_committed_and_answered_in_its_callback_when_commits_are_cheap(
        tmp_path, monkeypatch, loop):
    d = open_daemon(Config(rundir=str(tmp_path), state_dir=str(tmp_path)))
    if d.fastpath is None:
        pytest.skip("the C request path runs on the C store only")
    _cheap_commits(monkeypatch, True)
    pump = RequestPump(d, loop, d.persist)
    out = []
    disk = WatchedDisk(monkeypatch, (out,))
    s = d.open_session(out.append, name="alone", direct_replies=True)
    assert pump.serve_bytes(s, Packet(Op.WRITE, 1, 0, b"/gc/a\0v1").encode()) == b""
    assert out == []                          # the first: no commit of its alone seen yet
    run_until(loop, lambda: out)
    records = d.persist.records
    for req in (2, 3):                        # then each in the callback that brought it
        assert pump.serve_bytes(s, Packet(Op.WRITE, req, 0, b"/gc/a\0v%d" % req).encode()) == b""
        assert replies(out)[-1] == Packet(Op.WRITE, req, 0, b"OK\0")
    assert d.persist.records == records + 2
    assert disk.seen == [[0], [1], [2]]       # each record on disk before its reply left
    d.persist.close()


def test_a_second_client_puts_a_lone_client_back_on_group_commit(tmp_path, monkeypatch, loop):
    d = open_daemon(Config(rundir=str(tmp_path), state_dir=str(tmp_path)))
    if d.fastpath is None:
        pytest.skip("the C request path runs on the C store only")
    _cheap_commits(monkeypatch, True)
    pump = RequestPump(d, loop, d.persist)
    a_out, b_out = [], []
    disk = WatchedDisk(monkeypatch, (a_out, b_out))
    a = d.open_session(a_out.append, name="a", direct_replies=True)
    b = d.open_session(b_out.append, name="b", direct_replies=True)
    pump.serve_bytes(a, Packet(Op.WRITE, 1, 0, b"/gc/a\0v").encode())
    run_until(loop, lambda: a_out)
    pump.serve_bytes(a, Packet(Op.WRITE, 2, 0, b"/gc/a\0v").encode())   # alone: at once
    assert len(replies(a_out)) == 2
    records = d.persist.records

    def turn():                               # then both in one loop turn: one record
        pump.serve_bytes(b, Packet(Op.WRITE, 3, 0, b"/gc/b\0v").encode())
        pump.serve_bytes(a, Packet(Op.WRITE, 4, 0, b"/gc/a\0w").encode())
        assert (len(replies(a_out)), b_out) == (2, [])
    loop.call_soon(turn)
    run_until(loop, lambda: b_out and len(replies(a_out)) == 3)
    assert d.persist.records == records + 1
    assert disk.seen[-1] == [len(a_out) - 1, 0]
    d.persist.close()


def test_a_lone_client_waits_for_the_turn_when_a_commit_is_dear(tmp_path, monkeypatch, loop):
    d = open_daemon(Config(rundir=str(tmp_path), state_dir=str(tmp_path)))
    if d.fastpath is None:
        pytest.skip("the C request path runs on the C store only")
    _cheap_commits(monkeypatch, False)
    pump = RequestPump(d, loop, d.persist)
    out = []
    s = d.open_session(out.append, name="alone", direct_replies=True)
    for req in (1, 2):
        pump.serve_bytes(s, Packet(Op.WRITE, req, 0, b"/gc/a\0v").encode())
        assert len(replies(out)) == req - 1   # its reply waits for the scheduled commit
        run_until(loop, lambda: len(replies(out)) == req)
    d.persist.close()


def _engine_commit_world(tmp_path, monkeypatch, loop):
    """A journaled daemon whose commits wait a loop turn (so a test sees replies wait), its
    pump, the disk watched, a writer on a socket (replies direct) and a watcher: -> (config,
    daemon, pump, disk, (writer, its output), (watcher, its output))."""
    config = Config(rundir=str(tmp_path), state_dir=str(tmp_path))
    d = open_daemon(config)
    if d.fastpath is None:
        pytest.skip("the C request path runs on the C store only")
    _cheap_commits(monkeypatch, False)     # the reply waits a turn: see it wait
    pump = RequestPump(d, loop, d.persist)
    writer_out, watcher_out = [], []
    disk = WatchedDisk(monkeypatch, (writer_out, watcher_out))
    writer = d.open_session(writer_out.append, name="writer", direct_replies=True)
    watcher = d.open_session(watcher_out.append, name="watcher")
    return config, d, pump, disk, (writer, writer_out), (watcher, watcher_out)


def test_a_commit_answered_in_c_is_on_disk_before_its_reply_and_events(
        tmp_path, monkeypatch, loop):
    """TRANSACTION_END committing in the engine: its changes go through the store's change
    log like any (one record at the next loop turn), END's reply and the watch events wait
    for the fsync, and a daemon opened on the same state finds the committed nodes."""
    config, d, pump, disk, (writer, writer_out), (watcher, watcher_out) = \
        _engine_commit_world(tmp_path, monkeypatch, loop)
    d.handle(watcher, Packet(Op.WATCH, 1, 0, b"/gc\0tok\0"))
    d.flush()
    watcher_out.clear()
    records = d.persist.records
    # START and the WRITE inside change nothing in the store: no record, no fsync.
    assert pump.serve_bytes(writer, Packet(Op.TRANSACTION_START, 2, 0, b"\0").encode()) == b""
    tx = int(replies(writer_out)[0].payload[:-1])
    assert pump.serve_bytes(writer, Packet(Op.WRITE, 3, tx, b"/gc/x\0in-tx").encode()) == b""
    run_until(loop, lambda: len(replies(writer_out)) == 2)
    assert disk.seen == [] and d.persist.records == records
    sent = len(writer_out)
    assert pump.serve_bytes(writer, Packet(Op.TRANSACTION_END, 4, tx, b"T\0").encode()) == b""
    assert "TRANSACTION_END:1" in d.fastpath.answered([writer])     # the engine committed
    assert len(writer_out) == sent and watcher_out == []            # waiting for the disk
    run_until(loop, lambda: len(writer_out) > sent and watcher_out)
    assert disk.seen == [[sent, 0]] and d.persist.records == records + 1
    assert replies(writer_out)[2:] == [Packet(Op.TRANSACTION_END, 4, tx, b"OK\0")]
    assert replies(watcher_out) == [Packet(Op.WATCH_EVENT, 0, 0, b"/gc/x\0tok\0")]
    d.persist.close()
    again = open_daemon(config)
    assert again.store.get("/gc/x").value == b"in-tx"
    again.persist.close()


def test_a_removal_committed_in_c_is_on_disk_before_its_reply_and_events(
        tmp_path, monkeypatch, loop):
    """TRANSACTION_END committing a removal in the engine (a subtree removed, a node written
    beside it): one record at the next loop turn, END's reply and the REMOVE's events (to a
    watch below the root and one above it) wait for the fsync, and a daemon opened on the
    same state finds the subtree gone.  A conflicting END answered in C writes nothing and
    its EAGAIN leaves at once."""
    config, d, pump, disk, (writer, writer_out), (watcher, watcher_out) = \
        _engine_commit_world(tmp_path, monkeypatch, loop)
    for req, path in enumerate((b"/gc/r/a/deep", b"/gc/r/b"), 1):
        d.handle(writer, Packet(Op.WRITE, req, 0, path + b"\0v"))
    d.handle(watcher, Packet(Op.WATCH, 3, 0, b"/gc/r/a/deep\0below\0"))
    d.handle(watcher, Packet(Op.WATCH, 4, 0, b"/gc\0above\0"))
    d.flush()
    watcher_out.clear()
    writer_out.clear()
    disk.seen.clear()
    records = d.persist.records

    def served(*packets):
        return pump.serve_bytes(writer, b"".join(p.encode() for p in packets))

    assert served(Packet(Op.TRANSACTION_START, 5, 0, b"\0")) == b""
    tx = int(replies(writer_out)[0].payload[:-1])
    assert served(Packet(Op.RM, 6, tx, b"/gc/r\0"), Packet(Op.WRITE, 7, tx, b"/gc/s\0v")) == b""
    run_until(loop, lambda: len(replies(writer_out)) == 3)
    assert disk.seen == [] and d.persist.records == records
    sent = len(writer_out)
    assert served(Packet(Op.TRANSACTION_END, 8, tx, b"T\0")) == b""
    assert "TRANSACTION_END:1" in d.fastpath.answered([writer])     # the engine committed
    assert len(writer_out) == sent and watcher_out == []            # waiting for the disk
    run_until(loop, lambda: len(writer_out) > sent and watcher_out)
    assert disk.seen == [[sent, 0]] and d.persist.records == records + 1
    assert replies(writer_out)[3:] == [Packet(Op.TRANSACTION_END, 8, tx, b"OK\0")]
    assert replies(watcher_out) == [Packet(Op.WATCH_EVENT, 0, 0, b"/gc/r/a/deep\0below\0"),
                                    Packet(Op.WATCH_EVENT, 0, 0, b"/gc/r\0above\0"),
                                    Packet(Op.WATCH_EVENT, 0, 0, b"/gc/s\0above\0")]
    # A conflict: EAGAIN from the engine, nothing for the journal, the reply at once.
    assert served(Packet(Op.TRANSACTION_START, 9, 0, b"\0")) == b""
    run_until(loop, lambda: len(replies(writer_out)) == 5)
    tx = int(replies(writer_out)[4].payload[:-1])
    assert served(Packet(Op.RM, 10, tx, b"/gc/s\0")) == b""
    run_until(loop, lambda: len(replies(writer_out)) == 6)
    d.handle(watcher, Packet(Op.WRITE, 11, 0, b"/gc/s\0moved"))
    d.flush()
    seen, records = len(disk.seen), d.persist.records
    assert served(Packet(Op.TRANSACTION_END, 12, tx, b"T\0")) == b""
    assert replies(writer_out)[-1] == Packet(Op.ERROR, 12, tx, b"EAGAIN\0")
    assert d.fastpath.answered([writer]).endswith("TRANSACTION_END/EAGAIN:1")
    loop.run_until_complete(asyncio.sleep(0.01))
    assert len(disk.seen) == seen and d.persist.records == records
    d.persist.close()
    again = open_daemon(config)
    assert again.store.get("/gc/r") is None and again.store.get("/gc/r/a/deep") is None
    assert again.store.get("/gc/s").value == b"moved"
    again.persist.close()
