"""Snapshot and journal files, in-process: what start-up accepts, drops, and refuses."""
import asyncio
import os
import re
import shutil

import pytest

from xenstore_protocol import Op, Packet
from xsd.durability import persist, snapshot
from xsd.config import Config
from xsd.core.daemon import Daemon
from xsd.durability.persist import open_daemon as open_state
from xsd.durability.journal import FILE_HEADER, RECORD, CorruptError, StateError, read_records


def open_daemon(path, **kwargs) -> Daemon:
    return open_state(Config(rundir=str(path), state_dir=str(path), **kwargs))


def write(d, *pairs) -> None:
    """One batch (one journal record) per call."""
    s = d.open_session(lambda data: None, name="t")
    for i, (path, value) in enumerate(pairs):
        d.handle(s, Packet(Op.WRITE, i + 1, 0, path.encode() + b"\0" + value))
    d.flush()
    d.close_session(s)


def copy(src, dst) -> str:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("xsd.lock"))
    return str(dst)


def journal(path) -> str:
    return os.path.join(path, persist.JOURNAL_NAME)


def record_offsets(path) -> list:
    with open(journal(path), "rb") as f:
        data = f.read()
    offsets, offset = [], FILE_HEADER.size
    while offset < len(data) and data[offset:offset + 4] == b"XSDR":   # zeros: allocated ahead
        offsets.append(offset)
        offset += RECORD.size + RECORD.unpack_from(data, offset)[1]
    return offsets


def value(d, path):
    node = d.store.get(path)
    return None if node is None else node.value


@pytest.fixture
def saved(tmp_path):
    """A state dir holding a snapshot and a journal of three records."""
    d = open_daemon(tmp_path / "live")
    write(d, ("/a", b"1"))
    write(d, ("/b", b"2"))
    write(d, ("/c", b"3"), ("/a", b"4"))
    d.persist.close()
    return tmp_path / "live"



def damage_record(path, index: int) -> None:
    """One byte of the journal's record ``index`` flipped, inside its payload (its CRC fails)."""
    offset = record_offsets(path)[index]
    with open(journal(path), "r+b") as f:
        f.seek(offset + RECORD.size + 20)
        f.write(b"\xff")

def test_garbage_after_the_last_record_is_a_torn_tail(saved, tmp_path, caplog):
    path = copy(saved, tmp_path / "t")
    with open(journal(path), "ab") as f:
        f.write(b"XSDR\x40\x00\x00\x00partial")
    d = open_daemon(path)
    assert (value(d, "/a"), value(d, "/b"), value(d, "/c")) == (b"4", b"2", b"3")
    assert "torn last record" in caplog.text


def test_zeros_after_the_last_record_are_the_end(saved, tmp_path, caplog):
    path = copy(saved, tmp_path / "t")
    size = os.path.getsize(journal(path))
    assert size >= persist.PREALLOC_BYTES     # written into space allocated ahead
    with open(journal(path), "ab") as f:
        f.write(bytes(4096))          # a file extended but never written: what a power cut leaves
    assert value(open_daemon(path), "/c") == b"3"
    assert "torn" not in caplog.text


def test_a_torn_record_before_the_allocated_zeros_is_dropped(saved, tmp_path, caplog):
    path = copy(saved, tmp_path / "t")
    last = record_offsets(path)[-1]
    with open(journal(path), "r+b") as f:
        f.seek(last + RECORD.size + 4)
        f.write(bytes(64))            # the last record's write cut short: zeros where it ended
    d = open_daemon(path)
    assert (value(d, "/a"), value(d, "/c")) == (b"1", None)
    assert re.search(r"torn last record: \d+ bytes at offset %d" % last, caplog.text)
    torn = int(re.search(r"torn last record: (\d+) bytes", caplog.text).group(1))
    assert torn < 200                 # the record, not the megabyte of zeros after it


def test_a_damaged_last_record_is_a_torn_tail(saved, tmp_path):
    path = copy(saved, tmp_path / "t")
    damage_record(path, -1)
    d = open_daemon(path)
    assert (value(d, "/a"), value(d, "/b"), value(d, "/c")) == (b"1", b"2", None)


def test_a_damaged_middle_record_refuses_to_start(saved, tmp_path):
    path = copy(saved, tmp_path / "t")
    damage_record(path, 0)
    with pytest.raises(CorruptError, match="record 1 at offset 16 is damaged.*sound record follows"):
        open_daemon(path)
    # Nothing was rewritten: the operator can still look at the damage.
    with pytest.raises(CorruptError):
        open_daemon(path)


def test_salvage_keeps_the_records_before_the_damage(saved, tmp_path, caplog):
    path = copy(saved, tmp_path / "t")
    damaged_at = record_offsets(path)[1]
    damage_record(path, 1)
    d = open_daemon(path, journal_salvage=True)
    assert (value(d, "/a"), value(d, "/b"), value(d, "/c")) == (b"1", None, None)
    assert d.check() == []
    assert [n for n in os.listdir(path) if ".damaged." in n]    # the evidence is kept
    # What was dropped were acknowledged records (the damaged one and the sound one after
    # it), not a torn last write: the log says so.
    assert "torn last record" not in caplog.text and "never acknowledged" not in caplog.text
    assert re.search(r"dropped the damaged record at offset %d and every record after it "
                     r"\(\d+ bytes\): acknowledged changes, now lost" % damaged_at,
                     caplog.text), caplog.text


def test_a_record_out_of_sequence_refuses(saved, tmp_path):
    path = copy(saved, tmp_path / "t")
    offsets = record_offsets(path)
    with open(journal(path), "rb") as f:
        data = f.read()
    # Drop the second record whole: the third now follows the first.
    with open(journal(path), "wb") as f:
        f.write(data[:offsets[1]] + data[offsets[2]:])
    with pytest.raises(CorruptError, match="sequence number 3, expected 2"):
        open_daemon(path)


def test_a_damaged_snapshot_refuses(saved, tmp_path):
    path = copy(saved, tmp_path / "t")
    with open(os.path.join(path, persist.SNAPSHOT_NAME), "r+b") as f:
        f.seek(FILE_HEADER.size + RECORD.size + 30)
        f.write(b"\xff")
    with pytest.raises(CorruptError, match="snapshot"):
        open_daemon(path)


def test_a_truncated_snapshot_refuses(saved, tmp_path):
    path = copy(saved, tmp_path / "t")
    name = os.path.join(path, persist.SNAPSHOT_NAME)
    os.truncate(name, os.path.getsize(name) - 3)
    with pytest.raises(CorruptError):
        open_daemon(path)


def test_a_journal_without_its_snapshot_refuses(saved, tmp_path):
    path = copy(saved, tmp_path / "t")
    os.unlink(os.path.join(path, persist.SNAPSHOT_NAME))
    with pytest.raises(CorruptError, match="cannot be replayed without the snapshot"):
        open_daemon(path)


def test_a_journal_older_than_the_snapshot_is_skipped(saved, tmp_path):
    """A crash between writing the snapshot of epoch E+1 and replacing the journal of epoch E."""
    path = copy(saved, tmp_path / "t")
    d = open_daemon(path)                      # epoch E+1 after start-up; /a is 4
    write(d, ("/a", b"late"))                  # in the journal of E+1
    with open(journal(path), "rb") as f:
        old_journal = f.read()
    d.persist.checkpoint()                     # snapshot E+2 holds "late"; journal E+2 empty
    write(d, ("/z", b"after"))
    expected = value(d, "/z")
    del d
    # Put back the journal of E+1, as if the crash came before its replacement was renamed in.
    snap_epoch = snapshot.read_epoch(open(os.path.join(path, persist.SNAPSHOT_NAME), "rb").read(), "s")
    with open(journal(path), "wb") as f:
        f.write(old_journal)
    again = open_daemon(copy(path, tmp_path / "u"))
    assert value(again, "/a") == b"late"
    assert value(again, "/z") is None          # it was only in the journal of E+2, now replaced
    assert again.persist.epoch == snap_epoch + 1
    assert expected == b"after"


def test_a_journal_newer_than_the_snapshot_refuses(saved, tmp_path):
    path = copy(saved, tmp_path / "t")
    with open(journal(path), "r+b") as f:
        f.seek(8)
        f.write((99).to_bytes(8, "little"))
    with pytest.raises(CorruptError, match="epoch 99"):
        open_daemon(path)


def test_one_daemon_per_state_dir(saved):
    first = open_daemon(saved)
    with pytest.raises(StateError, match="in use by another xsd"):
        open_daemon(saved)
    del first


def test_read_records_finds_a_sound_record_after_damage():
    from xsd.durability.journal import BATCH, frame
    good = [frame(BATCH.pack(i + 1, 0)) for i in range(3)]
    data = good[0] + b"\x00" * 7 + good[1]
    with pytest.raises(CorruptError):
        read_records(data, 0, "j")
    payloads, end, torn = read_records(good[0] + good[1] + b"XSDR\xff\xff", 0, "j")
    assert (len(payloads), torn) == (2, 6)


def test_live_state_has_owner_counts_recomputed(saved, tmp_path):
    path = copy(saved, tmp_path / "t")
    d = open_daemon(path)
    assert d.store.owned_by(0) == len(d.store)
    assert d.check() == []


def guest_session(d, domid):
    """A guest's session as guest.py opens it (in-process: no ring)."""
    s = d.open_session(lambda data: None, domid=domid, privileged=False, name=f"dom{domid}")
    s.journal_watches = True
    return s


def test_guest_watches_are_journaled_replayed_and_kept_by_snapshots(tmp_path):
    d = open_daemon(tmp_path)
    dom0 = d.open_session(lambda data: None, name="dom0")
    d.handle(dom0, Packet(Op.INTRODUCE, 1, 0, b"5\x004096\x001\x00"))
    g = guest_session(d, 5)
    for req_id, payload in enumerate((b"/a\0t1\0", b"b\0t2\0", b"/c\0t3\0"), 2):
        d.handle(g, Packet(Op.WATCH, req_id, 0, payload))
    d.flush()
    d.handle(g, Packet(Op.UNWATCH, 9, 0, b"/c\0t3\0"))
    d.handle(dom0, Packet(Op.WATCH, 10, 0, b"/a\0dom0\0"))      # a socket client's: not kept
    d.flush()
    d.persist.close()
    kept = {5: {("/a", b"t1"): False, ("/local/domain/5/b", b"t2"): True}}

    again = open_daemon(tmp_path)                           # snapshot, then journal replayed
    assert again.persist.guest_watches.by_domid == kept
    assert list(again.persist.guest_watches.by_domid[5]) == [("/a", b"t1"), ("/local/domain/5/b", b"t2")]
    again.persist.close()                                   # that start wrote a new snapshot
    third = open_daemon(tmp_path)
    assert third.persist.guest_watches.by_domid == kept

    # RESET_WATCHES forgets them; so does the domain's release.
    g = guest_session(third, 5)
    third.handle(g, Packet(Op.RESET_WATCHES, 1, 0, b""))
    third.flush()
    third.persist.close()
    assert open_daemon(tmp_path).persist.guest_watches.by_domid == {}


def test_a_released_domain_leaves_no_watches_behind(tmp_path):
    d = open_daemon(tmp_path)
    dom0 = d.open_session(lambda data: None, name="dom0")
    d.handle(dom0, Packet(Op.INTRODUCE, 1, 0, b"7\x004096\x001\x00"))
    d.handle(guest_session(d, 7), Packet(Op.WATCH, 1, 0, b"/x\0t\0"))
    d.flush()
    d.handle(dom0, Packet(Op.RELEASE, 2, 0, b"7\0"))
    d.flush()
    d.persist.close()
    assert open_daemon(tmp_path).persist.guest_watches.by_domid == {}


# -- snapshots written between requests: every crash point ---------------------------------

def snapshot_in_progress(path):
    """A daemon serving on a loop, with a snapshot of epoch E+1 started and changes after it:
    /a rewritten, /gone removed, /made created, a transaction committed over /tx."""
    d = open_daemon(path)
    write(d, ("/a", b"before"), ("/gone", b"x"), ("/tx/k", b"0"))
    loop = asyncio.new_event_loop()
    d.persist.serve_on(loop)
    d.persist.start_snapshot()
    s = d.open_session(lambda data: None, name="t")
    d.handle(s, Packet(Op.WRITE, 1, 0, b"/a\0after"))
    d.handle(s, Packet(Op.RM, 2, 0, b"/gone\0"))
    d.handle(s, Packet(Op.WRITE, 3, 0, b"/made\0new"))
    d.handle(s, Packet(Op.TRANSACTION_START, 4, 0, b"\0"))
    d.flush()
    tx = max(s.transactions)
    d.handle(s, Packet(Op.WRITE, 5, tx, b"/tx/k\0committed"))
    d.handle(s, Packet(Op.TRANSACTION_END, 6, tx, b"T\0"))
    d.flush()
    return d, loop


def assert_after(d):
    assert value(d, "/a") == b"after"
    assert value(d, "/gone") is None
    assert value(d, "/made") == b"new"
    assert value(d, "/tx/k") == b"committed"
    assert d.check() == []


def test_a_crash_before_the_snapshot_is_renamed_in_replays_both_journals(tmp_path):
    d, loop = snapshot_in_progress(tmp_path / "live")
    assert os.path.exists(os.path.join(tmp_path / "live", persist.NEXT_JOURNAL_NAME))
    assert_after(open_daemon(copy(tmp_path / "live", tmp_path / "crash")))
    d.persist.close()
    loop.close()


def test_a_crash_between_the_two_renames_skips_the_old_journal(tmp_path):
    d, loop = snapshot_in_progress(tmp_path / "live")
    job = d.persist.job
    while job.step():
        pass
    job.sync()
    job.install()           # the snapshot of E+1 (the frozen tree) is in; the journal of E still there
    again = open_daemon(copy(tmp_path / "live", tmp_path / "crash"))
    assert_after(again)
    again.persist.close()
    # The snapshot alone holds the tree as it was when the snapshot began.
    os.unlink(os.path.join(tmp_path / "live", persist.NEXT_JOURNAL_NAME))
    before = open_daemon(copy(tmp_path / "live", tmp_path / "frozen"))
    assert value(before, "/a") == b"before" and value(before, "/gone") == b"x"
    assert value(before, "/made") is None and value(before, "/tx/k") == b"0"
    d.persist.close()
    loop.close()


def test_a_snapshot_written_between_requests_ends_with_one_journal(tmp_path):
    d, loop = snapshot_in_progress(tmp_path / "live")
    before = d.persist.snapshots
    while d.persist.snapshots == before:
        loop.run_until_complete(asyncio.sleep(0.001))
    assert getattr(d.store, "frozen", None) is None   # the Python store's copy on write ended
    assert not os.path.exists(os.path.join(tmp_path / "live", persist.NEXT_JOURNAL_NAME))
    write(d, ("/later", b"1"))
    d.persist.close()
    loop.close()
    again = open_daemon(copy(tmp_path / "live", tmp_path / "next-run"))
    assert_after(again)
    assert value(again, "/later") == b"1"
