"""Random requests at a live daemon over its socket: it answers every one, stays
consistent (CONTROL check), and other clients are unaffected."""
import random

from xenstore_protocol import Op

from tests.wire import RawClient

WORDS = [b"/", b"/a", b"/a/b", b"a", b"@introduceDomain", b"//", b"/a/", b"0", b"T", b"F",
         b"n0", b"r1", b"b0", b"5", b"x" * 300, b"", b"/local/domain/0", b"\xff", b"check", b"help"]


def random_payload(rng):
    fields = [rng.choice(WORDS) for _ in range(rng.randint(0, 4))]
    payload = b"\0".join(fields)
    if rng.random() < 0.8:
        payload += b"\0"
    if rng.random() < 0.1:
        payload += bytes(rng.randrange(256) for _ in range(rng.randint(1, 20)))
    return payload


def test_random_requests_keep_the_store_sound(daemon):
    rng = random.Random(20261121)
    with RawClient(daemon.socket_path) as fuzz, RawClient(daemon.socket_path) as bystander:
        bystander.ok(Op.WRITE, payload=b"/keep\0safe")
        for i in range(3000):
            op = rng.choice([*range(0, 27), 27, 99, 0xFFFF]) if rng.random() < 0.9 else rng.randrange(1 << 32)
            tx_id = rng.choice([0, 0, 0, 1, 2, 0xFFFFFFFF])
            req_id = fuzz.send_packet(op, random_payload(rng), tx_id=tx_id)
            reply = fuzz.reply(req_id)
            assert reply.req_id == req_id
            fuzz.events.clear()
        assert bystander.ok(Op.READ, b"/keep") == b"safe"
        assert bystander.ok(Op.CONTROL, b"check") == b"OK\0"
