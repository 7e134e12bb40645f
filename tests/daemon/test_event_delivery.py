"""The way from a change to its watchers' events: order across connections, and the
per-client bounds on the C path's deliveries (fastpath._deliver, watchreg.deliver_payloads,
Session.queue_payload) held to Python's dispatch.

A change's events are queued before its reply (C xenstored; dispatch._fire), and
``Daemon.flush`` writes the writer's reply first, then its watchers (measured against
the reverse, the Xen daemons' order for xsbench watch:W: docs/benchmarks.md, "the way
from a WRITE to its event").  Which connection the daemon writes first no client can see
for sure (each reads its own socket), so that is checked in process, on the Daemon object
the server drives, with each session's transport write recorded.
"""
import pytest

from xenstore_protocol import Decoder, Op, Packet

from xsd._native import BACKEND
from xsd.config import Config
from xsd.core.daemon import Daemon

from tests.daemon.test_engine_events import RecordingGuest, introduce_guests
from tests.wire import RawClient

@pytest.mark.parametrize("c_path", [
    pytest.param(True, id="C path", marks=pytest.mark.skipif(
        BACKEND != "cffi", reason="the C request path runs on the C store only")),
    pytest.param(False, id="Python path")])
def test_a_change_s_writer_is_written_its_reply_before_its_watchers_their_events(c_path):
    daemon = Daemon(Config(rundir="/nonexistent", python_requests=not c_path))
    assert (daemon.fastpath is not None) == c_path
    written = []

    def session(name):
        return daemon.open_session(lambda data: written.append((name, data)), name=name)

    # One watcher connected before the writer, one after: the order is not the connections'.
    first, writer, second = session("first"), session("writer"), session("second")
    for watcher, token in ((first, b"f"), (second, b"s")):
        daemon.handle(watcher, Packet(Op.WATCH, 1, 0, b"/w\0" + token + b"\0"))
    daemon.flush()
    written.clear()
    request = Packet(Op.WRITE, 7, 0, b"/w/x\0v")
    if c_path:      # as the request pump hands a batch to the engine (pump.serve_bytes)
        data = request.encode()
        assert daemon.fastpath.serve(writer, data, 1 << 16)[0] == len(data)
    else:
        daemon.handle(writer, request)
    daemon.flush()
    told = [(name, Decoder().feed(data)) for name, data in written]
    assert told[0] == ("writer", [Packet(Op.WRITE, 7, 0, b"OK\0")])
    assert sorted(told[1:]) == [
        ("first", [Packet(Op.WATCH_EVENT, 0, 0, b"/w/x\0f\0")]),
        ("second", [Packet(Op.WATCH_EVENT, 0, 0, b"/w/x\0s\0")])]


MAX_EVENTS = 8


def play_unread(proc) -> dict:
    """Watchers that read nothing while a writer sends batches of watched changes, then
    read everything: -> each connection's packets, in order.  The socket watcher has two
    watches with one token on /c and /c/d (every change below /c/d fires both with the
    same payload: coalesced), one on /e; the guest on its ring one on /c/d and a relative
    one on its home.  Each batch makes more events than --max-watch-events allows."""
    introduce_guests(proc)
    writer = RawClient(proc.socket_path, timeout=10)
    watcher = RawClient(proc.socket_path, timeout=10)
    guest = RecordingGuest(proc.rundir, 1, timeout=10)
    clients = {"writer": writer, "watcher": watcher, "g1": guest}
    try:
        writer.ok(Op.WRITE, payload=b"/c/d\0")
        writer.ok(Op.SET_PERMS, b"/c/d", b"n0", b"r1")     # the guest may read what is below
        for client, path, token in ((watcher, b"/c", b"tok"), (watcher, b"/c/d", b"tok"),
                                    (watcher, b"/e", b"other"), (guest, b"/c/d", b"g"),
                                    (guest, b"data", b"home")):
            client.ok(Op.WATCH, path, token)
        for batch in range(4):
            requests = [Packet(Op.WRITE, 100 * batch + i, 0, b"/c/d/k%d\0v%d" % (i, batch))
                        for i in range(MAX_EVENTS + 4)]
            requests.insert(3, Packet(Op.WRITE, 100 * batch + 50, 0, b"/e/x\0%d" % batch))
            requests.insert(0, Packet(Op.WRITE, 100 * batch + 60, 0,
                                      b"/local/domain/1/data/n\0%d" % batch))
            writer.sock.sendall(b"".join(p.encode() for p in requests))
            for packet in requests:
                assert writer.reply(packet.req_id).op == Op.WRITE
        for client in clients.values():         # whatever was queued before arrives first
            client.call(Op.GET_DOMAIN_PATH, b"0")
        return {name: [(p.op, p.req_id, p.tx_id, p.payload) for p in client.received]
                for name, client in clients.items()}
    finally:
        for client in clients.values():
            client.close()


def test_watchers_that_do_not_read_get_what_python_s_would(daemon_factory):
    """Per-client event limits per batch, coalescing of identical waiting events and the
    events owed to watches that lost some: the same packets, in the same order, on every
    connection, with the engine firing the changes as with every request through
    dispatch."""
    limit = ("--max-watch-events", str(MAX_EVENTS))
    with_engine = play_unread(daemon_factory(*limit, name="engine"))
    python_only = play_unread(daemon_factory(*limit, "--python-requests", name="python"))
    for name in with_engine:
        assert with_engine[name] == python_only[name], name
    events = [p[3] for p in with_engine["watcher"] if p[0] == Op.WATCH_EVENT]
    below = [e for e in events if e.startswith(b"/c/d/k")]
    # Coalesced (one event for the two watches), cut at the limit in each batch...
    assert len(below) == 4 * (MAX_EVENTS - 1) and len(set(below)) == MAX_EVENTS - 1, events
    # ...and each watch that lost events told once per batch on its own path.
    assert events.count(b"/c\0tok\0") == 1 + 4 and events.count(b"/c/d\0tok\0") == 1 + 4, events
    guest = [p[3] for p in with_engine["g1"] if p[0] == Op.WATCH_EVENT]
    assert guest.count(b"data/n\0home\0") == 4 and b"/c/d/k0\0g\0" in guest, guest
    assert guest.count(b"/c/d\0g\0") > 1, guest     # it lost some too: told on its ring
