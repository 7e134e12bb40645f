"""The journal record built in C (xsd/_native/journal_enc.c) against the Python encoder.

Three daemons, in-process, get the same requests batch by batch: two on the C
store, one on the Python store (``Daemon(store=Store())``).  At the end of each
batch each builds its record: the C builder (``journal.CRecords``) on one C
store, the Python one (``journal.PyRecords``: ``encode_changes`` and ``frame``,
what XSD_NATIVE=python runs) on the other C store and on the Python store.
The three records must be the same bytes.  The requests aim at what the
encoder has to get right: hundreds of children created under one parent in
one batch, chains created in one write, subtrees removed and re-created in the
same batch, permission changes, transactions committed among other writes
(and, through the stores' loading interface, new children that are not the
last of their parent's: the ORDER entry's case).
The C records are then replayed into an empty C store, which must equal the
live one.  Seeded: a failure replays.
"""
import random

import pytest

from xenstore_protocol import Op, Packet
from xsd._native import BACKEND
from xsd.config import Config
from xsd.core.daemon import Daemon
from xsd.core.store import Store
from xsd.durability.journal import (BATCH, ORDER, Codec, CRecords, PyRecords,
                                    read_records)

pytestmark = pytest.mark.skipif(BACKEND != "cffi", reason="the C encoder needs the C build "
                                "(XSD_NATIVE=python runs PyRecords alone: the replay tests)")

NAMES = ["a", "b", "c"]


class Twins:
    """The same requests to every daemon; each daemon's dom0 session and open transaction."""

    def __init__(self, tmp_path):
        config = Config(rundir=str(tmp_path))
        self.daemons = [Daemon(config), Daemon(config), Daemon(config, store=Store())]
        assert [d.store.handle is not None for d in self.daemons[:2]] == [True, True]
        self.builders = [CRecords(self.daemons[0].store),
                         PyRecords(self.daemons[1].store, Codec()),
                         PyRecords(self.daemons[2].store, Codec())]
        for d in self.daemons:
            d.store.track(True)
        self.sessions = [d.open_session(lambda data: None, name="dom0") for d in self.daemons]
        self.in_tx = False
        self.req = 0
        self.seq = 0
        self.records = []
        self.orders = 0

    def send(self, op, payload: bytes, in_tx: bool = False) -> None:
        self.req += 1
        for d, session in zip(self.daemons, self.sessions):
            tx_id = next(iter(session.transactions)) if in_tx else 0   # ids differ per daemon
            d.handle(session, Packet(op, self.req, tx_id, payload))

    def write(self, path: str, value: bytes = b"", in_tx: bool = False) -> None:
        self.send(Op.WRITE, path.encode() + b"\0" + value, in_tx)

    def rm(self, path: str, in_tx: bool = False) -> None:
        self.send(Op.RM, path.encode() + b"\0", in_tx)

    def start(self) -> None:
        self.send(Op.TRANSACTION_START, b"\0")
        assert all(len(s.transactions) == 1 for s in self.sessions)
        self.in_tx = True

    def end(self, commit: bool = True) -> None:
        self.send(Op.TRANSACTION_END, b"T\0" if commit else b"F\0", in_tx=True)
        self.in_tx = False

    def batch_end(self) -> bytes:
        """Every builder's record of the batch: the same bytes, or the test fails."""
        self.seq += 1
        records = [b.record(self.seq) for b in self.builders]
        records = [None if r is None else bytes(r) for r in records]
        assert records[0] == records[1], f"record {self.seq}: C and Python encoders differ"
        assert records[1] == records[2], f"record {self.seq}: the C and Python stores differ"
        self.orders += self.builders[0].encoder.orders
        for d in self.daemons:
            d.flush()                   # the replies, to nowhere
        if records[0] is None:
            self.seq -= 1               # nothing recorded: the number is not used
        else:
            self.records.append(records[0])
        return records[0]


def random_step(t: Twins, rng: random.Random) -> None:
    roll = rng.random()
    in_tx = t.in_tx and rng.random() < 0.6
    if roll < 0.25:                     # wide: many children of one parent
        t.write("/w/%d" % rng.randrange(400), rng.randbytes(rng.randint(0, 40)), in_tx)
    elif roll < 0.35:                   # deep: a chain created by one write
        depth = rng.randint(1, 30)
        t.write("/d/" + "/".join(rng.choice(NAMES) for _ in range(depth)), b"v", in_tx)
    elif roll < 0.45:                   # small tree: collisions, re-creation
        t.write("/" + "/".join(rng.choice(NAMES) for _ in range(rng.randint(1, 3))),
                rng.randbytes(rng.randint(0, 8)), in_tx)
    elif roll < 0.55:
        path = rng.choice(["/w", "/d", "/a", "/b"]) if rng.random() < 0.2 else \
            "/" + "/".join(rng.choice(NAMES) for _ in range(rng.randint(1, 3)))
        t.rm(path, in_tx)
    elif roll < 0.60:
        t.rm("/w/%d" % rng.randrange(400), in_tx)
    elif roll < 0.65:
        t.send(Op.MKDIR, b"/m/%d\0" % rng.randrange(20), in_tx)
    elif roll < 0.75:
        path = "/" + "/".join(rng.choice(NAMES) for _ in range(rng.randint(1, 3)))
        t.send(Op.SET_PERMS, path.encode() + b"\0n%d\0r%d\0" % (rng.randint(0, 3),
                                                              rng.randint(0, 3)), in_tx)
    elif roll < 0.85:
        if t.in_tx:
            t.end(commit=rng.random() < 0.8)
        else:
            t.start()
    else:                               # a burst under one new parent: the tail of its list
        up = "/burst/%d" % rng.randrange(5)
        for i in range(rng.randint(1, 60)):
            t.write("%s/%d" % (up, i), b"x", in_tx)


def replay(records: list):
    """A fresh C store with every record's entries applied (replay's own path)."""
    fresh = Daemon(Config(rundir="/nonexistent")).store
    codec = Codec()
    data = b"".join(records)
    payloads, end, torn = read_records(data, 0, "records")
    assert (end, torn, len(payloads)) == (len(data), 0, len(records))
    for payload in payloads:
        codec.apply(fresh, payload, BATCH.size, on_meta=None)
        fresh.next_gen = max(fresh.next_gen, BATCH.unpack_from(payload)[1])
    return fresh


@pytest.mark.parametrize("seed", range(8))
def test_c_records_equal_the_python_encoders_and_replay_to_the_live_store(tmp_path, seed):
    rng = random.Random(seed)
    t = Twins(tmp_path)
    for _ in range(120):
        for _ in range(rng.randint(1, 25)):
            random_step(t, rng)
        t.batch_end()
    if t.in_tx:
        t.end()
    t.batch_end()
    assert len(t.records) > 100
    live = t.daemons[0].store
    fresh = replay(t.records)
    # The initial tree was there before tracking began: the replayed store has it too.
    assert fresh.dump() == live.dump()
    assert fresh.next_gen == live.next_gen


def test_created_children_that_are_not_the_tail_get_an_order_entry(tmp_path):
    """The fallback of journal.py's docstring ("ORDER, an explicit list"): no request
    leaves a batch's new children anywhere but last today, so the order is changed
    through the stores' loading interface (``order``, which records nothing)."""
    t = Twins(tmp_path)
    t.write("/p/old", b"1")
    t.write("/p/mid", b"2")
    t.batch_end()
    t.write("/p/new", b"3")
    for d in t.daemons:
        d.store.order("/p", ["mid", "new", "old"])     # "old" after the new child
    record = t.batch_end()
    assert t.orders == 1
    assert bytes([ORDER]) + b"\x02\x00\x0c\x00\x00\x00/pmid\0new\0old\0" in record
    fresh = replay(t.records)
    assert fresh.child_names("/p") == ["mid", "new", "old"]
    assert fresh.dump() == t.daemons[0].store.dump()


def test_a_batch_without_changes_records_nothing_and_a_tail_alone_is_framed(tmp_path):
    t = Twins(tmp_path)
    t.send(Op.READ, b"/\0")
    assert t.batch_end() is None
    tail = b"\x05\x02\x00\x00\x00{}"            # a META entry, as persist.commit passes one
    records = [bytes(b.record(1, tail)) for b in t.builders]
    assert records[0] == records[1] == records[2]
    assert records[0].endswith(tail)
    payloads, _, _ = read_records(records[0], 0, "tail")
    assert BATCH.unpack_from(payloads[0])[0] == 1
