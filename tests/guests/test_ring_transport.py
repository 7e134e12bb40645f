"""The daemon's end of a guest ring: wrap-around, split and oversized requests, garbage indexes,
ring reconnection, and guests that never consume what the daemon sends."""
import os
import random
import socket

import pytest

from xenstore_protocol import HEADER_SIZE, Op, Packet, join_fields
from xenstore_protocol.constants import HEADER

from xsd.hv_cli import toolstack_introduce
from xsd.hypervisor.guest_client import SocketClient
from xsd.hypervisor.mock import XENSTORED_EVTCHN, MockControl
from xsd._native import BACKEND
from xsd.transport.ring import ERROR_PROTO, ERROR_RINGIDX

from tests.wire import RawClient

from .conftest import Guests, memreport, usage, wait_for


def test_indexes_starting_near_the_uint32_limit_wrap_and_messages_split(guests, toolstack):
    row = guests.create(introduce=False)
    guest = guests.open(row.domid)
    start = 0xFFFFFFFF - 300             # guests must not assume indexes start at zero
    guest.ring.set_indexes(start, start, start, start)
    toolstack_introduce(toolstack, row)
    rng = random.Random(7)
    for i in range(150):
        value = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 1500)))
        guest.write(f"data/k{i % 10}", value)
        assert guest.read(f"data/k{i % 10}") == value
    # The daemon consumes a request in the ring only at the flush after its reply is in
    # rsp (guest.py: crash safety), so req_cons may trail the last reply for a moment.
    wait_for(lambda: guest.ring.indexes()[0] == guest.ring.indexes()[1], what="req_cons")
    req_cons, req_prod, rsp_cons, rsp_prod = guest.ring.indexes()
    assert req_cons == req_prod < start and rsp_cons == rsp_prod < start   # both wrapped past 2**32


def test_a_request_fed_one_byte_at_a_time_is_answered(guests):
    guest = guests.start()
    data = Packet(Op.READ, 77, 0, join_fields(b"name")).encode()
    for i in range(len(data)):
        assert guest.ring.write_requests(data[i:i + 1]) == 1
        guest.notify()
    assert guest.reply(77).payload == guest.read("name")


def test_requests_and_replies_larger_than_the_ring(guests):
    guest = guests.start()
    value = bytes(range(256)) * 8                       # 2048 bytes: twice the ring
    guest.write("data/big", value)
    assert guest.read("data/big") == value
    assert guest.error(Op.WRITE, payload=b"data/big\0" + value + b"x") == "ENOSPC"   # node-size 2048


def test_garbage_indexes_drop_only_that_guests_connection(daemon, guests, toolstack):
    bad, good = guests.start(), guests.start()
    bad.watch("data", b"w")
    bad.wait_events(1)
    cons = bad.ring.indexes()[0]
    bad.ring.set_indexes(cons, cons + 5000, *bad.ring.indexes()[2:])
    bad.notify()
    wait_for(lambda: bad.ring.error == ERROR_RINGIDX, what="the error field")
    assert usage(toolstack, bad.domid)["watches"][0] == "0"
    assert toolstack.ok(Op.IS_DOMAIN_INTRODUCED, str(bad.domid).encode()) == b"T\0"
    assert good.read("name")
    assert toolstack.ok(Op.CONTROL, b"check") == b"OK\0"
    assert f"dom{bad.domid}: request ring: inconsistent indexes" in daemon.log()
    bad.reconnect()                                     # the way back: a fresh connection
    assert bad.ring.error == 0
    assert bad.read("name") == toolstack.read(f"/local/domain/{bad.domid}/name")


def test_garbage_response_indexes_also_drop_the_connection(guests, toolstack):
    bad = guests.start()
    bad.read("name")
    rsp_cons = bad.ring.indexes()[2]
    bad.ring.set_indexes(*bad.ring.indexes()[:2], rsp_cons + 3000, rsp_cons)
    bad.send_packet(Op.READ, b"name\0")                 # the reply meets the broken rsp indexes
    wait_for(lambda: bad.ring.error == ERROR_RINGIDX, what="the error field")


def test_an_oversized_packet_is_a_protocol_error(guests, toolstack):
    bad, good = guests.start(), guests.start()
    bad.ring.write_requests(HEADER.pack(Op.WRITE, 1, 0, 5000) + b"x" * 100)
    bad.notify()
    wait_for(lambda: bad.ring.error == ERROR_PROTO, what="the error field")
    assert good.read("name")


def test_reconnection_discards_watches_transactions_and_half_sent_requests(guests, toolstack):
    guest = guests.start()
    guest.watch("data", b"w")
    guest.wait_events(1)
    tx = guest.transaction_start()
    guest.ring.write_requests(HEADER.pack(Op.READ, 5, 0, 100)[:HEADER_SIZE - 3])  # half a header
    guest.reconnect()
    assert guest.ring.indexes() == (0, 0, 0, 0)
    assert usage(toolstack, guest.domid)["watches"][0] == "0"
    assert guest.error(Op.READ, b"name", tx_id=tx) == "ENOENT"
    assert guest.read("name")


def stuff(guest, data: bytes) -> int:
    """Write requests without ever reading the replies; return the bytes the ring took."""
    view = memoryview(data)
    taken = 0
    while view:
        n = guest.ring.write_requests(view)
        if n:
            view = view[n:]
            taken += n
            guest.notify()
        elif not guest.wait_notification(0.5):
            break                                 # the daemon stopped reading our requests
    return taken


def test_a_guest_that_never_reads_its_replies_is_paused_not_buffered(daemon_factory):
    proc = daemon_factory("--out-high-water", "4096")
    with SocketClient(proc.socket_path, timeout=10) as toolstack:
        made = Guests(proc, MockControl(proc.rundir), toolstack)
        try:
            lazy, other = made.start(), made.start()
            lazy.write("data/big", b"v" * 2000)
            requests = b"".join(Packet(Op.READ, i, 0, b"data/big\0").encode() for i in range(1, 401))
            taken = stuff(lazy, requests)
            assert taken < len(requests)          # back-pressure reached the guest's own ring
            assert other.read("name")             # everyone else is served meanwhile
            assert toolstack.ok(Op.CONTROL, b"check") == b"OK\0"
            lazy._send(requests[taken:])          # now it reads: every request gets its reply
            for req_id in range(1, 401):
                assert lazy.reply(req_id).payload == b"v" * 2000
        finally:
            made.close()


def test_watch_events_for_a_guest_that_never_reads_are_bounded(daemon_factory):
    proc = daemon_factory("--out-high-water", "4096", "--max-watch-events", "100")
    with SocketClient(proc.socket_path, timeout=10) as toolstack:
        made = Guests(proc, MockControl(proc.rundir), toolstack)
        try:
            lazy = made.start()
            home = f"/local/domain/{lazy.domid}"
            lazy.watch("data", b"flood")
            lazy.wait_events(1)
            for i in range(600):                  # distinct paths: nothing coalesces
                toolstack.write(f"{home}/data/n{i}", b"x")
            assert int(memreport(toolstack)["events-dropped"]) > 0
            got = lazy.quiet_events(0.3)
            assert 100 <= len(got) < 600
            assert lazy.read("data/n599") == b"x"
        finally:
            made.close()


def test_stray_notifications_are_ignored(daemon, guests):
    guest = guests.start()
    addr = os.path.join(daemon.rundir, XENSTORED_EVTCHN)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        for junk in (b"", b"evtchn", b"evtchn 999 1", b"evtchn x y", b"\xff" * 64, b"virq 3"):
            s.sendto(junk, addr)
    assert guest.read("name")


@pytest.mark.skipif(BACKEND != "cffi", reason="the C request path runs on the C store only")
def test_a_request_completed_by_a_later_read_of_the_ring_is_answered_by_the_engine(daemon, guests):
    """A guest's request whose header the daemon read alone is answered by the C path once
    a later read completes it, as a socket's is (tests/daemon/test_engine_split_reads.py)."""
    guest = guests.start()
    for i in range(3):
        guest.write(f"data/d/{i}", b"")
    listing = Packet(Op.DIRECTORY, 70, 0, b"data/d\0").encode()
    # One write to the ring, so one read: a whole READ, then the DIRECTORY's header alone.
    # The READ's reply says the daemon has read the header too, and holds it.
    guest.ring.write_requests(Packet(Op.READ, 60, 0, b"data/d/0\0").encode()
                              + listing[:HEADER_SIZE])
    guest.notify()
    assert guest.reply(60).op == Op.READ
    guest.ring.write_requests(listing[HEADER_SIZE:])
    guest.notify()
    assert guest.reply(70).payload == b"0\0" b"1\0" b"2\0"
    with RawClient(daemon.socket_path) as dom0:
        engine = memreport(dom0)["c-path-requests"]
    assert "DIRECTORY:1" in engine.split(), engine
