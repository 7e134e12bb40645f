"""The ring page on its own: wrap-around, split messages, garbage indexes, checked against a model."""
import random

import pytest

from xsd.transport.ring import (
    INTERFACE_SIZE, REQ_CONS, REQ_PROD, RSP, Ring, RingError, ERROR_RINGIDX,
)


def page():
    return Ring(bytearray(4096))


def test_layout_matches_xs_wire_h():
    ring = page()
    ring.set_indexes(1, 2, 3, 4)
    ring.server_features, ring.connection, ring.error = 5, 6, 7
    words = [int.from_bytes(ring.mem[o:o + 4], "little") for o in range(2048, INTERFACE_SIZE, 4)]
    assert words == [1, 2, 3, 4, 5, 6, 7]


def test_bytes_pass_through_in_order_across_the_uint32_wrap():
    ring = page()
    start = 0xFFFFFFFF - 700
    ring.set_indexes(start, start, start, start)
    sent, got = bytearray(), bytearray()
    rng = random.Random(4)
    for _ in range(200):
        chunk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 900)))
        n = ring.write_requests(chunk)
        sent += chunk[:n]
        got += ring.read_requests(rng.randrange(1, 1025))
    got += ring.read_requests()
    assert got == sent and len(sent) > 20000
    cons, prod = ring.indexes()[:2]
    assert cons == prod == (start + len(sent)) & 0xFFFFFFFF


def test_message_split_across_the_ring_boundary():
    ring = page()
    ring.set_indexes(0, 0, 1000, 1000)          # rsp: 24 bytes left before the boundary
    message = bytes(range(100))
    assert ring.write_responses(message) == 100
    assert bytes(ring.mem[RSP + 1000:RSP + 1024]) == message[:24]
    assert bytes(ring.mem[RSP:RSP + 76]) == message[24:]
    assert ring.read_responses() == message


def test_a_full_ring_takes_nothing_more():
    ring = page()
    assert ring.write_requests(b"x" * 1500) == 1024
    assert ring.write_requests(b"y") == 0
    assert ring.read_requests(10) == b"x" * 10
    assert ring.write_requests(b"yyyyyyyyyyyy") == 10


def test_peeked_requests_stay_in_the_ring_until_acknowledged():
    ring = page()
    ring.set_indexes(1000, 1000, 0, 0)           # across the boundary
    assert ring.write_requests(b"a" * 30 + b"b" * 20) == 50
    assert ring.peek_requests(0, 30) == b"a" * 30
    assert ring.peek_requests(30) == b"b" * 20
    assert ring.peek_requests(50) == b""
    assert ring.indexes()[0] == 1000             # nothing consumed: the guest's room is unchanged
    assert ring.write_requests(b"c" * 2000) == 1024 - 50
    ring.ack_requests(30)
    assert ring.indexes()[0] == 1030
    assert ring.peek_requests(0, 20) == b"b" * 20   # what was not acknowledged is still there
    assert ring.write_requests(b"d" * 100) == 30
    with pytest.raises(RingError, match="already read"):
        ring.peek_requests(1025)                 # the guest moved its producer back


@pytest.mark.parametrize("cons, prod", [(0, 1025), (5000, 0), (0, 0x80000000), (1, 0)])
def test_garbage_indexes_raise_ring_error_and_touch_nothing(cons, prod):
    ring = page()
    ring.set_indexes(cons, prod, 0, 0)
    with pytest.raises(RingError) as info:
        ring.read_requests()
    assert info.value.code == ERROR_RINGIDX
    assert ring.indexes()[:2] == (cons, prod)
    with pytest.raises(RingError):
        ring.write_requests(b"x")


def test_exactly_full_is_consistent():
    ring = page()
    ring.set_indexes(0xFFFFFFF0, (0xFFFFFFF0 + 1024) & 0xFFFFFFFF, 0, 0)
    assert len(ring.read_requests()) == 1024


def test_random_operations_match_a_simple_model():
    """Seeded random producers/consumers against a deque of bytes."""
    rng = random.Random(1234)
    ring = page()
    base = rng.randrange(1 << 32)
    ring.set_indexes(base, base, 0, 0)
    model = bytearray()
    stream = 0
    for _ in range(3000):
        if rng.random() < 0.5:
            chunk = bytes([i % 251 for i in range(stream, stream + rng.randrange(0, 300))])
            n = ring.write_requests(chunk)
            assert n == min(len(chunk), 1024 - len(model))
            model += chunk[:n]
            stream += n
        else:
            limit = rng.randrange(0, 1100)
            data = ring.read_requests(limit)
            assert data == bytes(model[:limit])
            del model[:len(data)]
        cons, prod = ring.indexes()[:2]
        assert (prod - cons) & 0xFFFFFFFF == len(model)


def test_too_small_or_read_only_buffers_are_refused():
    with pytest.raises(ValueError):
        Ring(bytearray(100))
    with pytest.raises(ValueError):
        Ring(bytes(4096))


def test_reset_empties_both_queues():
    ring = page()
    ring.write_requests(b"abc")
    ring.write_responses(b"de")
    ring.reset()
    assert ring.indexes() == (0, 0, 0, 0)
    assert ring.read_requests() == b"" and ring.read_responses() == b""
    assert REQ_CONS == 2048 and REQ_PROD == 2052
