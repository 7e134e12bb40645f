"""Live update: the daemon replaces itself; the socket never goes away, the store and guests stay."""
import os
import signal
import threading
import time

import pytest

from tests.daemon_process import DaemonProcess
from tests.durability.domains import introduce
from tests.waiting import wait_for
from tests.wire import RawClient
from xenstore_protocol import Op
from xsd.hypervisor.guest_client import GuestClient


def wait_closed(c, timeout=30.0) -> None:
    """Until the daemon closes this connection (the old process exec'ing)."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            c._pump(1.0)
    except (ConnectionResetError, BrokenPipeError):
        return
    raise AssertionError("the connection stayed open: no live update happened")


def wait_log(proc, text: str, timeout=30.0) -> None:
    wait_for(lambda: text in proc.log(), timeout, f"{text!r} in the log", interval=0.02)


class Hammer(threading.Thread):
    """Connects again and again, one READ per connection; counts what a client must never see."""

    def __init__(self, path: str):
        super().__init__(daemon=True)
        self.path = path
        self.refused = []          # ECONNREFUSED, ENOENT: the socket was gone
        self.answered = 0
        self.reset = 0             # closed by the old process: allowed, the client retries
        self.stop = False

    def run(self):
        while not self.stop:
            try:
                with RawClient(self.path, timeout=30) as c:
                    assert c.ok(Op.READ, b"/lu/key") == b"kept"
                    self.answered += 1
            except (ConnectionRefusedError, FileNotFoundError) as err:
                self.refused.append(repr(err))
            except (ConnectionResetError, BrokenPipeError):
                self.reset += 1


@pytest.fixture
def proc(tmp_path):
    p = DaemonProcess(tmp_path / "run", ["--server-features", "3"])
    yield p
    alive = p.alive()
    p.stop()
    assert alive, p.log()
    assert "Traceback" not in p.log(), p.log()


def test_live_update_keeps_the_listening_socket_and_the_store(proc):
    proc.start()
    pid = proc.proc.pid
    with RawClient(proc.socket_path) as c:
        c.ok(Op.WRITE, payload=b"/lu/key\0kept")
        c.ok(Op.SET_PERMS, b"/lu/key", b"n0", b"r3")
        gen = c.ok(Op.DIRECTORY_PART, b"/lu", b"0")
    hammer = Hammer(proc.socket_path)
    hammer.start()
    while hammer.answered < 5:
        time.sleep(0.01)
    with RawClient(proc.socket_path) as c:
        assert c.ok(Op.CONTROL, b"live-update") == b"OK\0"
        wait_closed(c)
    wait_log(proc, "live update: restored from pid")
    answered_before = hammer.answered
    while hammer.answered < answered_before + 5:
        time.sleep(0.01)
    hammer.stop = True
    hammer.join()
    assert hammer.refused == []
    assert proc.proc.pid == pid and proc.alive()
    with RawClient(proc.socket_path) as c:
        assert c.ok(Op.READ, b"/lu/key") == b"kept"
        assert c.ok(Op.GET_PERMS, b"/lu/key") == b"n0\0r3\0"
        assert c.ok(Op.DIRECTORY_PART, b"/lu", b"0") == gen
        c.check()
        c.ok(Op.WRITE, payload=b"/lu/after\0yes")
    # The new process journals as the old did: a kill -9 now loses nothing.
    proc.kill()
    proc.start()
    with RawClient(proc.socket_path) as c:
        assert c.ok(Op.READ, b"/lu/after") == b"yes"


def test_sigusr1_live_update_without_persistence_twice(tmp_path):
    proc = DaemonProcess(tmp_path / "run", ["--no-persist"]).start()
    try:
        with RawClient(proc.socket_path) as c:
            c.ok(Op.WRITE, payload=b"/mem/a\0only in memory")
        for round_ in (1, 2):
            with RawClient(proc.socket_path) as c:
                c.ok(Op.READ, b"/mem/a")
                os.kill(proc.proc.pid, signal.SIGUSR1)
                wait_closed(c)
            while proc.log().count("live update: restored from pid") < round_:
                time.sleep(0.02)
            with RawClient(proc.socket_path) as c:
                assert c.ok(Op.READ, b"/mem/a") == b"only in memory"
        assert not os.path.exists(os.path.join(proc.rundir, "xsd.journal"))
        assert not os.path.exists(os.path.join(proc.rundir, "xsd.liveupdate"))
        assert proc.log().count("--live-restore") == 2      # the option is not repeated
        assert proc.log().count("--live-restore /") == 2
    finally:
        proc.stop()


def test_a_second_request_while_updating_is_busy(proc):
    proc.start()
    with RawClient(proc.socket_path) as c:
        assert c.ok(Op.CONTROL, b"live-update", b"-s") == b"OK\0"
        assert c.ok(Op.CONTROL, b"live-update") == b"BUSY\0"
        wait_closed(c)
    wait_log(proc, "live update: restored from pid")


def test_guest_keeps_its_ring_watches_and_pending_output(proc):
    proc.start()
    introduce(proc, 4, "g4")
    guest = GuestClient(proc.rundir, 4, timeout=20)
    try:
        guest.write("data/before", b"1")
        guest.watch("data", b"tok")
        assert guest.wait_events(1) == [(b"data", b"tok")]
        tx = guest.transaction_start()
        guest.write("data/in-tx", b"lost", tx_id=tx)
        with RawClient(proc.socket_path) as c:
            assert c.ok(Op.CONTROL, b"live-update") == b"OK\0"
            wait_closed(c)
        wait_log(proc, "live update: restored from pid")
        assert "1 guest sessions" in proc.log()
        # The ring still answers, with nothing lost and no error.
        assert guest.read("data/before") == b"1"
        # The watch moved across: a write by dom0 fires it.
        with RawClient(proc.socket_path) as c:
            c.ok(Op.WRITE, payload=b"/local/domain/4/data/x\0from dom0")
            c.check()
        assert guest.wait_events(1) == [(b"data/x", b"tok")]
        # The open transaction cannot move: it ends in EAGAIN, which clients retry.
        assert guest.error(Op.TRANSACTION_END, b"T", tx_id=tx) == "EAGAIN"
        tx = guest.transaction_start()
        guest.write("data/in-tx", b"retried", tx_id=tx)
        guest.transaction_end(tx)
        assert guest.read("data/in-tx") == b"retried"
    finally:
        guest.close()


def test_the_decoder_hands_over_a_partial_packet_exactly_as_read():
    """What a guest connection moves to the new process (GuestConnection.export_state)."""
    from xenstore_protocol import Decoder, Packet
    wire = Packet(Op.WRITE, 7, 0, b"/a\0value").encode() + Packet(Op.READ, 8, 0, b"/a\0").encode()
    old = Decoder()
    assert old.feed(wire[:-3]) == [Packet(Op.WRITE, 7, 0, b"/a\0value")]
    handed = old.unread()
    assert handed == wire[len(wire) - 3 - len(handed):-3]
    assert Decoder().feed(handed + wire[-3:]) == [Packet(Op.READ, 8, 0, b"/a\0")]
