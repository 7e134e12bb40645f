"""watchlib's sans-I/O protocol core: bytes in, requests and routed events out, no socket.

Both clients are shells over ``ProtocolCore``; these tests drive it with
packets built by the shared codec, as a daemon would send them
(docs/misc/xenstore.txt: the reply echoes req_id; a WATCH is followed by one
initial event; events carry ``path\\0token\\0``).
"""
import pytest

from watchlib.protocol import BARRIER_PATH, Disconnected, ProtocolCore
from watchlib.subscription import DeliveryQueue, Event, Resync, Subscription
from watchlib.watches import WatchRegistry
from xenstore_protocol import Decoder, Op, Packet, join_fields


class Waiter:
    def __init__(self):
        self.outcome = None

    def complete(self, reply, error):
        self.outcome = (reply, error)


def sent(data):
    (packet,) = Decoder().feed(data)
    return packet


def event(path, token):
    return Packet(Op.WATCH_EVENT, 0, 0, join_fields(path.encode(), token.encode())).encode()


def core_with_registry():
    return ProtocolCore(WatchRegistry("t"), DeliveryQueue())


def test_replies_are_matched_by_req_id_whatever_their_order():
    core = ProtocolCore()
    first, second = Waiter(), Waiter()
    id1, data1 = core.send(Op.READ, b"/a\0", 0, first)
    id2, _ = core.send(Op.READ, b"/b\0", 0, second)
    assert id1 != id2 and sent(data1).req_id == id1 and sent(data1).op == Op.READ
    fed = core.feed(Packet(Op.READ, id2, 0, b"B").encode()
                    + Packet(Op.ERROR, id1, 0, b"ENOENT\0").encode()[:5])
    assert [(w, r) for w, r, _ in fed.replies] == [(second, b"B")]
    # The rest of the first reply, one byte at a time.
    rest = Packet(Op.ERROR, id1, 0, b"ENOENT\0").encode()[5:]
    replies = [r for b in rest for r in core.feed(bytes([b])).replies]
    assert len(replies) == 1 and replies[0][0] is first and replies[0][2].name == "ENOENT"


def test_a_reply_for_a_forgotten_request_is_dropped():
    core = ProtocolCore()
    req_id, _ = core.send(Op.READ, b"/a\0", 0, Waiter())
    core.forget(req_id)
    assert core.feed(Packet(Op.READ, req_id, 0, b"x").encode()).replies == []


def test_transaction_of_a_lost_connection_is_refused():
    core = ProtocolCore()
    waiter = Waiter()
    core.send(Op.READ, b"/a\0", 0, waiter)
    assert core.lost(rewatch=True) == [waiter]
    with pytest.raises(Disconnected):
        core.send(Op.READ, b"/a\0", 5, Waiter(), gen=1)
    core.send(Op.READ, b"/a\0", 5, Waiter(), gen=2)


def test_events_without_registry_come_back_raw():
    core = ProtocolCore()
    assert core.feed(event("/x", "mytoken")).events == [("/x", "mytoken")]


def test_watch_routing_swallows_the_initial_event_and_queues_matches():
    core = core_with_registry()
    sub = Subscription(None, "/d/*/state", print)
    dw = core.subscribe(sub)
    op, payload, hook = core.watch_request(dw)
    assert (op, payload) == (Op.WATCH, join_fields(b"/d", dw.token.encode()))
    req_id, _ = core.send(op, payload, 0, Waiter(), hook)
    fed = core.feed(Packet(Op.WATCH, req_id, 0, b"OK\0").encode() + event("/d", dw.token)
                    + event("/d/1/state", dw.token) + event("/d/1/other", dw.token))
    assert dw.registered and fed.woke and fed.events == []
    assert core.queue.pop() == (sub, Event("/d/1/state", sub))
    assert core.queue.pop() is None
    assert core.subscribe(Subscription(None, "/d/*/x", print)) is None   # shares the watch


def test_rewatch_queues_resync_where_the_watch_is_back():
    core = core_with_registry()
    sub = Subscription(None, "/r", print)
    dw = core.subscribe(sub)
    _, payload, hook = core.watch_request(dw)
    req_id, _ = core.send(Op.WATCH, payload, 0, Waiter(), hook)
    core.feed(Packet(Op.WATCH, req_id, 0, b"OK\0").encode())
    core.lost(rewatch=True)
    assert core.rewatch_pending and not dw.registered
    ((again, op, payload2, hook2),) = core.rewatch_requests()
    assert again is dw and payload2 == payload
    req_id, _ = core.send(op, payload2, 0, Waiter(), hook2)
    fed = core.feed(Packet(Op.WATCH, req_id, 0, b"OK\0").encode() + event("/r", dw.token)
                    + event("/r/k", dw.token))
    assert fed.woke
    (s, item) = core.queue.pop()
    assert s is sub and isinstance(item, Resync)
    assert core.queue.pop() == (sub, Event("/r/k", sub))
    assert core.unsubscribe(sub) == payload and core.unsubscribe(sub) is None


def test_barrier_event_queues_the_waiter_behind_earlier_events():
    core = core_with_registry()
    sub = Subscription(None, "/b", print)
    dw = core.subscribe(sub)
    dw.registered = True
    waiter = Waiter()
    payload = core.add_barrier(waiter)
    assert payload.startswith(BARRIER_PATH.encode() + b"\0")
    token = payload.split(b"\0")[1].decode()
    core.feed(event("/b/1", dw.token) + event(BARRIER_PATH, token))
    assert core.queue.pop()[1].path == "/b/1"
    assert core.queue.pop() == (None, waiter)
    # Lost before the event: the barrier fails with the requests in flight.
    other = Waiter()
    core.add_barrier(other)
    assert other in core.lost(rewatch=False)
