"""The real daemon killed and started again: what survives, what start-up says."""
import os
import resource

import pytest

from tests.daemon_process import DaemonProcess
from tests.durability.domains import introduce
from tests.waiting import wait_for
from tests.wire import RawClient
from xenstore_protocol import Op
from xsd._native import BACKEND
from xsd.durability import persist
from xsd.hypervisor.guest_client import GuestClient
from xsd.hypervisor.mock import MockControl
from xsd.durability.journal import FILE_HEADER, RECORD, read_records


def records_end(name: str) -> int:
    """Where the journal's records end (zeros allocated ahead follow)."""
    with open(name, "rb") as f:
        return read_records(f.read(), FILE_HEADER.size, name)[1]


@pytest.fixture
def proc(tmp_path):
    p = DaemonProcess(tmp_path / "run")
    yield p
    p.kill()


def test_writes_survive_kill_9(proc):
    proc.start()
    with RawClient(proc.socket_path) as c:
        c.ok(Op.WRITE, payload=b"/s/a\0one")
        c.ok(Op.MKDIR, b"/s/empty")
        c.ok(Op.RM, b"/tool/xenstored")
    proc.kill()
    proc.start()
    with RawClient(proc.socket_path) as c:
        assert c.ok(Op.READ, b"/s/a") == b"one"
        assert c.ok(Op.DIRECTORY, b"/s") == b"a\0empty\0"
        assert c.error(Op.READ, b"/tool/xenstored") == "ENOENT"
        c.check()


def test_a_committed_transaction_survives_and_an_open_one_vanishes(proc):
    proc.start()
    with RawClient(proc.socket_path) as c:
        tx = int(c.ok(Op.TRANSACTION_START, b"")[:-1])
        c.ok(Op.WRITE, payload=b"/t/x\0committed", tx_id=tx)
        c.ok(Op.WRITE, payload=b"/t/y\0committed", tx_id=tx)
        c.ok(Op.TRANSACTION_END, b"T", tx_id=tx)
        open_tx = int(c.ok(Op.TRANSACTION_START, b"")[:-1])
        c.ok(Op.WRITE, payload=b"/t/z\0never", tx_id=open_tx)
    proc.kill()
    proc.start()
    with RawClient(proc.socket_path) as c:
        assert c.ok(Op.DIRECTORY, b"/t") == b"x\0y\0"
        assert c.ok(Op.READ, b"/t/y") == b"committed"


def test_torn_last_record_is_dropped_and_logged(proc):
    proc.start()
    with RawClient(proc.socket_path) as c:
        c.ok(Op.WRITE, payload=b"/torn/kept\0yes")
    proc.kill()
    name = os.path.join(proc.rundir, persist.JOURNAL_NAME)
    end = records_end(name)
    with open(name, "r+b") as f:
        f.seek(end)
        f.write(b"XSDR\x00\x01\x00\x00\x12\x34")      # a record cut after 10 bytes
    proc.start()
    assert "dropped a torn last record: 10 bytes" in proc.log()
    with RawClient(proc.socket_path) as c:
        assert c.ok(Op.READ, b"/torn/kept") == b"yes"
        c.ok(Op.WRITE, payload=b"/torn/after\0also")
    proc.kill()
    proc.start()                                       # the torn bytes did not stay behind
    with RawClient(proc.socket_path) as c:
        assert c.ok(Op.READ, b"/torn/after") == b"also"


def test_damaged_middle_record_refuses_to_start_with_a_clear_message(proc):
    proc.start()
    with RawClient(proc.socket_path) as c:
        for i in range(3):
            c.ok(Op.WRITE, payload=b"/bad/k%d\0v" % i)
    proc.kill()
    name = os.path.join(proc.rundir, persist.JOURNAL_NAME)
    with open(name, "r+b") as f:
        f.seek(FILE_HEADER.size + RECORD.size + 18)
        f.write(b"\xee")
    with pytest.raises(RuntimeError):
        proc.start()
    assert proc.proc.returncode == 1
    log = proc.log()
    assert "cannot start" in log and "is damaged" in log and "Refusing to start" in log
    assert "--journal-salvage" in log
    assert "Traceback" not in log


def test_snapshots_compact_the_journal_and_replay_on_top(tmp_path):
    proc = DaemonProcess(tmp_path / "run", ["--journal-max-bytes", "4096"]).start()
    try:
        with RawClient(proc.socket_path) as c:
            for i in range(300):
                c.ok(Op.WRITE, payload=b"/snap/k%03d\0%d" % (i % 97, i))
            for i in range(0, 97, 3):
                c.ok(Op.RM, b"/snap/k%03d" % i)
            report = c.memreport()
            listing = c.ok(Op.DIRECTORY, b"/snap")
        assert int(report["snapshots"]) >= 3            # compacted while serving
        assert records_end(os.path.join(proc.rundir, persist.JOURNAL_NAME)) < 3 * 4096
        proc.kill()
        proc.start()
        with RawClient(proc.socket_path) as c:
            assert c.ok(Op.DIRECTORY, b"/snap") == listing
            assert c.ok(Op.READ, b"/snap/k001") == b"292"
            c.check()
    finally:
        proc.kill()


def test_no_persist_keeps_the_store_in_memory_only(tmp_path):
    proc = DaemonProcess(tmp_path / "run", ["--no-persist"]).start()
    try:
        with RawClient(proc.socket_path) as c:
            c.ok(Op.WRITE, payload=b"/mem/a\0v")
            assert c.memreport()["persist"] == "off"
        assert not any(name.startswith("xsd.") and name != "xsd.log"
                       for name in os.listdir(proc.rundir))
        proc.kill()
        proc.start()
        with RawClient(proc.socket_path) as c:
            assert c.error(Op.READ, b"/mem/a") == "ENOENT"
    finally:
        proc.kill()


def test_generations_survive_so_directory_part_and_transactions_stay_right(proc):
    proc.start()
    with RawClient(proc.socket_path) as c:
        for name in (b"a", b"b", b"c"):
            c.ok(Op.WRITE, payload=b"/gen/" + name + b"\0")
        before = c.ok(Op.DIRECTORY_PART, b"/gen", b"0")
    proc.kill()
    proc.start()
    with RawClient(proc.socket_path) as c:
        assert c.ok(Op.DIRECTORY_PART, b"/gen", b"0") == before
        c.ok(Op.WRITE, payload=b"/gen/d\0")
        after = c.ok(Op.DIRECTORY_PART, b"/gen", b"0")
        assert int(after.split(b"\0")[0]) > int(before.split(b"\0")[0])   # never a number reused
        # A transaction started now commits, and conflicts as it should.
        tx = int(c.ok(Op.TRANSACTION_START, b"")[:-1])
        c.ok(Op.READ, b"/gen/a", tx_id=tx)
        c.ok(Op.WRITE, payload=b"/gen/a\0outside")
        c.ok(Op.WRITE, payload=b"/gen/a\0inside", tx_id=tx)
        assert c.error(Op.TRANSACTION_END, b"T", tx_id=tx) == "EAGAIN"


def test_permissions_domains_quotas_soft_quotas_and_special_perms_survive(proc):
    proc.start()
    introduce(proc, 7, "g7")
    with RawClient(proc.socket_path) as c:
        c.ok(Op.WRITE, payload=b"/local/domain/7/data/x\0v")
        c.ok(Op.SET_PERMS, b"/local/domain/7/data/x", b"n7", b"r0")
        c.ok(Op.SET_QUOTA, b"7", b"nodes", b"55")
        c.ok(Op.SET_QUOTA, b"watches", b"77")
        c.ok(Op.CONTROL, b"quota-soft", b"set", b"memory", b"12345")
        c.ok(Op.SET_PERMS, b"@releaseDomain", b"n0", b"r7")
        usage = c.ok(Op.CONTROL, b"quota", b"7")
    proc.kill()
    proc.start()
    with RawClient(proc.socket_path) as c:
        assert c.ok(Op.IS_DOMAIN_INTRODUCED, b"7") == b"T\0"
        assert c.ok(Op.GET_PERMS, b"/local/domain/7/data/x") == b"n7\0r0\0"
        assert c.ok(Op.GET_QUOTA, b"7", b"nodes") == b"55\0"
        assert c.ok(Op.GET_QUOTA, b"watches") == b"77\0"
        assert b"memory           :    12345 " in c.ok(Op.CONTROL, b"quota-soft")
        assert c.ok(Op.GET_PERMS, b"@releaseDomain") == b"n0\0r7\0"
        assert c.ok(Op.CONTROL, b"quota", b"7") == usage    # owner accounting recomputed
        c.check()
    assert "domain 7 introduced: ring mapped" in proc.log().split("loaded")[-1]   # ring re-attached


def test_fsync_interval_mode_serves_and_survives_a_process_crash(tmp_path):
    proc = DaemonProcess(tmp_path / "run", ["--fsync", "interval", "--fsync-interval", "0.05"]).start()
    try:
        with RawClient(proc.socket_path) as c:
            for i in range(20):
                c.ok(Op.WRITE, payload=b"/iv/k%d\0v" % i)
            assert c.memreport()["fsync"] == "interval"
        proc.kill()
        proc.start()
        with RawClient(proc.socket_path) as c:
            assert len(c.ok(Op.DIRECTORY, b"/iv").split(b"\0")) == 21
    finally:
        proc.kill()


def test_state_dir_option_puts_the_files_elsewhere(tmp_path):
    state = tmp_path / "state"
    proc = DaemonProcess(tmp_path / "run", ["--state-dir", str(state)]).start()
    try:
        with RawClient(proc.socket_path) as c:
            c.ok(Op.WRITE, payload=b"/sd\0v")
        assert os.path.exists(state / persist.JOURNAL_NAME)
        assert not os.path.exists(os.path.join(proc.rundir, persist.JOURNAL_NAME))
        other = DaemonProcess(tmp_path / "run2", ["--state-dir", str(state)])
        with pytest.raises(RuntimeError):
            other.start()                              # one daemon per state directory
        assert "in use by another xsd" in other.log()
    finally:
        proc.kill()


def test_a_domain_replaced_while_xsd_was_down_is_released_not_inherited(proc):
    """The uuid is saved with the domain: a new domain on the same domid is not the old guest."""
    proc.start()
    control = MockControl(proc.rundir)
    old = introduce(proc, 9, "old9", control)
    with RawClient(proc.socket_path) as c:
        c.ok(Op.WRITE, payload=b"/local/domain/9/secret\0old")
        c.ok(Op.SET_PERMS, b"/local/domain/9/secret", b"n9")
    proc.kill()
    control.destroy(9)
    new = control.create(domid=9, name="new9")          # same domid, another domain
    assert new["uuid"] != old["uuid"]
    proc.start()
    with RawClient(proc.socket_path) as c:
        # Released at the first domain check after start-up; its nodes go with it (XSA-419).
        wait_for(lambda: c.ok(Op.IS_DOMAIN_INTRODUCED, b"9") == b"F\0",
                 what="the replaced domain's release")
        assert c.error(Op.READ, b"/local/domain/9/secret") == "ENOENT"
        c.check()
    log = proc.log().split("loaded")[-1]
    assert "replaced while xsd was down" in log
    assert "domain 9 introduced: ring mapped" not in log          # the new domain's ring untouched


def test_the_same_domain_keeps_its_ring_across_a_restart(proc):
    proc.start()
    control = MockControl(proc.rundir)
    introduce(proc, 4, "same4", control)
    introduce(proc, 5, "gone5", control)                    # the witness of the domain check
    proc.kill()
    control.destroy(5)
    proc.start()
    with RawClient(proc.socket_path) as c:
        # The first domain check releases the vanished domain 5, in the same pass
        # that judges domain 4: once 5 is gone, the check is past.
        wait_for(lambda: c.ok(Op.IS_DOMAIN_INTRODUCED, b"5") == b"F\0",
                 what="the first domain check")
        assert c.ok(Op.IS_DOMAIN_INTRODUCED, b"4") == b"T\0"
    assert "domain 4 introduced: ring mapped" in proc.log().split("loaded")[-1]


def test_a_guests_watches_survive_a_crash_and_fire_afterwards(proc):
    """The guest keeps its ring across the crash and never re-registers: its watches must stay."""
    proc.start()
    introduce(proc, 6, "w6")
    guest = GuestClient(proc.rundir, 6, timeout=10)
    try:
        guest.watch("data", b"rel")
        guest.watch("/local/domain/6/gone", b"gone")
        assert sorted(guest.wait_events(2)) == [(b"/local/domain/6/gone", b"gone"),
                                                (b"data", b"rel")]
        guest.ok(Op.UNWATCH, b"/local/domain/6/gone", b"gone")
        proc.kill()
        proc.start()
        # One event per kept watch on its own path: whatever was owed when the daemon
        # died is re-read; the removed watch did not come back.
        assert guest.wait_events(1) == [(b"data", b"rel")]
        with RawClient(proc.socket_path) as c:
            c.ok(Op.WRITE, payload=b"/local/domain/6/data/x\0v")
            c.ok(Op.WRITE, payload=b"/local/domain/6/gone\0v")
            c.check()
        assert guest.wait_events(1) == [(b"data/x", b"rel")]
        assert guest.quiet_events(0.2) == []
        assert guest.read("data/x") == b"v"              # the ring serves as before
    finally:
        guest.close()
    assert "domain 6: 1 watches restored" in proc.log().split("loaded")[-1]


@pytest.mark.skipif(BACKEND != "cffi", reason="the C request path runs on the C store only")
def test_a_guests_watches_answered_by_the_engine_survive_kill_9(proc):
    """The C request path answers a journaled guest's WATCH and UNWATCH (its first
    WATCH too) and the journal records each before its reply leaves: killed at once
    after the last reply, the daemon starts again with exactly the watches the guest
    was told it has, in their order, and they fire."""
    proc.start()
    introduce(proc, 7, "c7")
    guest = GuestClient(proc.rundir, 7, timeout=10)
    try:
        for path, token in (("data", b"rel"), ("/local/domain/7/abs", b"abs"),
                            ("data/gone", b"gone"), ("@releaseDomain", b"rel-dom")):
            guest.watch(path, token)
        guest.ok(Op.UNWATCH, b"data/gone", b"gone")
        guest.watch("data/gone", b"again")      # dropped and made again: it stays
        with RawClient(proc.socket_path) as c:
            engine = c.memreport().get("c-path-requests", "").split()
        assert "WATCH:5" in engine and "UNWATCH:1" in engine, engine    # the guest's
        guest.wait_events(5)
        proc.kill()
        proc.start()
        # One event per kept watch on its own path (re-read whatever was owed).
        assert sorted(guest.wait_events(4)) == [
            (b"/local/domain/7/abs", b"abs"), (b"@releaseDomain", b"rel-dom"),
            (b"data", b"rel"), (b"data/gone", b"again")]
        with RawClient(proc.socket_path) as c:
            c.ok(Op.WRITE, payload=b"/local/domain/7/abs\0v")
            c.check()
        assert guest.wait_events(1) == [(b"/local/domain/7/abs", b"abs")]
        assert guest.quiet_events(0.2) == []
    finally:
        guest.close()
    assert "domain 7: 4 watches restored" in proc.log().split("loaded")[-1]


def test_a_guest_request_cut_by_a_crash_is_answered_after_it(proc):
    """The daemon dies while journaling a guest's request (a file-size limit makes the
    journal's next write fail, and a failed journal write stops the daemon): the request
    stays in the ring, the next daemon answers it, and the guest's transaction from before
    comes back doomed (EAGAIN)."""
    proc.start()
    introduce(proc, 8, "f8")
    guest = GuestClient(proc.rundir, 8, timeout=20)
    try:
        guest.write("data/before", b"0")
        tx = guest.transaction_start()
        guest.write("data/in-tx", b"1", tx_id=tx)
        with RawClient(proc.socket_path) as c:
            end = int(c.memreport()["journal-bytes"])
        resource.prlimit(proc.proc.pid, resource.RLIMIT_FSIZE, (end, end))
        req = guest.send_packet(Op.WRITE, b"/local/domain/8/data/x\0v")
        assert proc.proc.wait(10) == persist.EXIT_JOURNAL_FAILED   # died journaling it
        assert guest.quiet_events(0.1) == []
        proc.start()
        reply = guest.reply(req)
        assert (reply.op, reply.payload) == (Op.WRITE, b"OK\0")
        assert guest.read("data/x") == b"v"
        guest.write("data/in-tx-2", b"2", tx_id=tx)      # the old transaction still answers...
        assert guest.error(Op.TRANSACTION_END, b"T", tx_id=tx) == "EAGAIN"   # ...and retries
        tx = guest.transaction_start()                   # new ids: a random start, away
        guest.write("data/in-tx", b"3", tx_id=tx)        # from the dead daemon's
        guest.transaction_end(tx)
        assert guest.read("data/in-tx") == b"3"
        with RawClient(proc.socket_path) as c:
            c.check()
    finally:
        guest.close()
