"""Requests split across reads still take the C request path (xsd/transport/connection.py).

libxenstore writes a request's header and its payload in two writes, so one read of the
daemon's may get the header alone.  The packet the next read completes is answered by
the engine, as one that came whole is: before, it went to Python's dispatch (slower,
though with the same reply), for about 40% of xsbench dir's requests."""
import time

import pytest

from xenstore_protocol import Op, Packet
from xenstore_protocol.constants import HEADER_SIZE

from xsd._native import BACKEND

from tests.daemon.test_engine_events import c_path_counts
from tests.wire import RawClient


@pytest.fixture(params=["journal", "in memory"])
def daemon(request, daemon_factory):
    """A socket's batch journaling and in memory: the pump's two ways through
    ``RequestPump.serve_bytes`` (replies after the record, or straight to the transport)."""
    return daemon_factory(*(["--no-persist"] if request.param == "in memory" else []))


@pytest.mark.skipif(BACKEND != "cffi", reason="the C request path runs on the C store only")
@pytest.mark.parametrize("cut", [HEADER_SIZE - 6, HEADER_SIZE, HEADER_SIZE + 2],
                         ids=["in the header", "after the header", "in the payload"])
def test_a_request_completed_by_a_later_read_is_answered_by_the_engine(daemon, cut):
    with RawClient(daemon.socket_path) as xs:
        for i in range(3):
            xs.ok(Op.WRITE, payload=b"/d/%d\0" % i)
        listing = Packet(Op.DIRECTORY, 70, 0, b"/d\0").encode()
        # One send, so one read: a whole READ, then the DIRECTORY cut short.  Its reply
        # says the daemon has read the rest too, and holds the cut packet.
        xs.sock.sendall(Packet(Op.READ, 60, 0, b"/d/0\0").encode() + listing[:cut])
        assert xs.reply(60).op == Op.READ
        xs.sock.sendall(listing[cut:] + Packet(Op.READ, 80, 0, b"/d/1\0").encode())
        assert xs.reply(70).payload == b"0\0" b"1\0" b"2\0"
        assert xs.reply(80).op == Op.READ
        counts = c_path_counts(xs.memreport())
    assert counts.get("DIRECTORY") == 1 and counts.get("READ") == 2, counts


def test_a_packet_still_incomplete_waits_for_the_rest(daemon):
    """A later read that does not complete the packet leaves it held; the read that does
    completes it, byte by byte too."""
    with RawClient(daemon.socket_path) as xs:
        xs.ok(Op.WRITE, payload=b"/d/0\0")
        listing = Packet(Op.DIRECTORY, 70, 0, b"/d\0").encode()
        for i in range(len(listing)):
            xs.sock.sendall(listing[i:i + 1])
        assert xs.reply(70).payload == b"0\0"
        xs.check()


def test_the_middle_of_a_packet_is_never_read_as_packets(daemon):
    """Reads of the middle of a packet, each longer than a header, are held with it until
    the one that completes it, even when they look like requests: a value made of READ
    packets, sent a few of them per read, is written whole and none of them is answered."""
    inner = Packet(Op.READ, 77, 0, b"/first\0").encode()
    value = inner * 100
    head = Packet(Op.WRITE, 90, 0, b"/many\0" + value).encode()[:-len(value)]
    with RawClient(daemon.socket_path) as xs:
        xs.ok(Op.WRITE, payload=b"/first\0v")
        xs.sock.sendall(head)
        for at in range(0, len(value), 5 * len(inner)):
            time.sleep(0.002)       # one read of the daemon's each
            xs.sock.sendall(value[at:at + 5 * len(inner)])
        assert xs.reply().req_id == 90
        assert xs.ok(Op.READ, b"/many") == value
        assert not xs.replies
        xs.check()
