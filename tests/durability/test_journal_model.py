"""The journal against the live store: random requests, then reload and compare everything.

Drives the Daemon in-process (no sockets), so thousands of requests cost
little.  After each batch the state is recorded; reloading the files must give
exactly the state after the last whole batch, whatever was cut off the
journal's end.  Seeded, so a failure replays.
"""
import os
import random
import shutil

import pytest

from xenstore_protocol import Op, Packet
from xsd.durability import persist
from xsd.config import Config
from xsd.core.daemon import Daemon
from xsd.durability.persist import open_daemon
from xsd.durability.journal import FILE_HEADER, RECORD

NAMES = ["a", "b", "c", "d"]


def state(d) -> dict:
    """Everything that must survive: nodes (children in order), generations, meta, owner counts."""
    store = d.store
    return {
        "nodes": {p: (n.value, n.perms, list(store.child_names(p)), n.gen)
                  for p, n in store.items()},
        "next_gen": store.next_gen,
        "owned": {domid: store.owned_by(domid) for domid in {n.owner for _, n in store.items()}},
        "meta": persist.meta_state(d),
    }


def load(path) -> Daemon:
    return open_daemon(Config(rundir=str(path), state_dir=str(path)))


def random_path(rng) -> str:
    return "/" + "/".join(rng.choice(NAMES) for _ in range(rng.randint(1, 3)))


class Driver:
    def __init__(self, d, rng):
        self.d = d
        self.rng = rng
        self.req = 0
        self.dom0 = d.open_session(lambda data: None, name="dom0")
        self.guest = None
        self.tx = None

    def send(self, session, op, *fields, payload=None, tx_id=0):
        self.req += 1
        if payload is None:
            payload = b"".join(f + b"\0" for f in fields)
        self.d.handle(session, Packet(op, self.req, tx_id, payload))

    def step(self) -> None:
        rng = self.rng
        session = self.dom0
        tx_id = 0
        if self.tx is not None and rng.random() < 0.7:
            tx_id = self.tx
        roll = rng.random()
        path = random_path(rng).encode()
        if roll < 0.40:
            self.send(session, Op.WRITE, payload=path + b"\0" + rng.randbytes(rng.randint(0, 40)),
                      tx_id=tx_id)
        elif roll < 0.55:
            self.send(session, Op.RM, path, tx_id=tx_id)
        elif roll < 0.62:
            self.send(session, Op.MKDIR, path, tx_id=tx_id)
        elif roll < 0.70:
            owner = rng.choice([0, 0, 1, 2])
            self.send(session, Op.SET_PERMS, path, b"n%d" % owner, b"r%d" % rng.randint(0, 3),
                      tx_id=tx_id)
        elif roll < 0.78:
            if self.tx is None:
                self.send(session, Op.TRANSACTION_START, b"")
                self.tx = max(session.transactions) if session.transactions else None
            else:
                self.send(session, Op.TRANSACTION_END, rng.choice([b"T", b"T", b"F"]), tx_id=self.tx)
                self.tx = None
        elif roll < 0.82:
            domid = rng.randint(1, 3)
            if rng.random() < 0.6:
                self.send(session, Op.INTRODUCE, b"%d" % domid, b"%d" % (1000 + domid), b"1")
            else:
                self.send(session, Op.RELEASE, b"%d" % domid)
        elif roll < 0.85:
            self.send(session, Op.SET_QUOTA, b"nodes", b"%d" % rng.randint(100, 2000))
        elif roll < 0.87:
            self.send(session, Op.SET_PERMS, b"@releaseDomain", b"n0", b"r%d" % rng.randint(1, 3))
        else:
            # An unprivileged writer in its own home (quota accounting, owners).
            if self.guest is None or rng.random() < 0.05:
                if self.guest is not None:
                    self.d.close_session(self.guest)
                self.guest = self.d.open_session(lambda data: None, domid=1, privileged=False,
                                                 name="dom1")
            self.send(self.guest, Op.WRITE, payload=b"/local/domain/1/" + rng.choice(NAMES).encode()
                      + b"\0v")


@pytest.mark.parametrize("seed", range(6))
def test_reload_equals_the_live_store(tmp_path, seed):
    rng = random.Random(seed)
    live_dir = tmp_path / "live"
    d = load(live_dir)
    d.persist.journal_max = 1 << 30           # keep one journal: checked below with compaction
    driver = Driver(d, rng)
    journal = os.path.join(live_dir, persist.JOURNAL_NAME)
    states = [(d.persist.journal_size, state(d))]
    # Dom0 gives dom1 a writable home, as a toolstack does.
    driver.send(driver.dom0, Op.WRITE, payload=b"/local/domain/1\0")
    driver.send(driver.dom0, Op.SET_PERMS, b"/local/domain/1", b"n1")
    d.flush()
    states.append((d.persist.journal_size, state(d)))
    for _ in range(150):
        for _ in range(rng.randint(1, 12)):
            driver.step()
        d.flush()
        states.append((d.persist.journal_size, state(d)))
        assert d.check() == []

    # Whole files: the last state.
    copy = tmp_path / "copy"
    shutil.copytree(live_dir, copy, ignore=shutil.ignore_patterns("xsd.lock"))
    assert state(load(copy)) == states[-1][1]

    # Cut anywhere: the state after the last whole record, the torn rest dropped.
    with open(journal, "rb") as f:
        data = f.read()[:d.persist.journal_size]     # past it: zeros allocated ahead
    for cut in sorted(rng.sample(range(FILE_HEADER.size, len(data)), 25)) + [FILE_HEADER.size]:
        shutil.rmtree(copy)
        shutil.copytree(live_dir, copy, ignore=shutil.ignore_patterns("xsd.lock"))
        with open(os.path.join(copy, persist.JOURNAL_NAME), "r+b") as f:
            f.truncate(cut)
        expected = [s for size, s in states if size <= cut][-1]
        assert state(load(copy)) == expected, f"cut at {cut}"


def test_compaction_keeps_the_state(tmp_path):
    rng = random.Random(99)
    d = open_daemon(Config(rundir=str(tmp_path / "live"), state_dir=str(tmp_path / "live"),
                      journal_max_bytes=2000))
    driver = Driver(d, rng)
    for _ in range(300):
        for _ in range(rng.randint(1, 8)):
            driver.step()
        d.flush()
    assert d.persist.snapshots > 5
    shutil.copytree(tmp_path / "live", tmp_path / "copy", ignore=shutil.ignore_patterns("xsd.lock"))
    assert state(load(tmp_path / "copy")) == state(d)


def test_one_record_per_batch_whatever_its_size(tmp_path):
    d = load(tmp_path)
    s = d.open_session(lambda data: None, name="t")
    records = d.persist.records
    for i in range(50):
        d.handle(s, Packet(Op.WRITE, i + 1, 0, b"/batch/k%d\0v" % i))
    d.flush()
    assert d.persist.records == records + 1
    d.flush()                                  # nothing changed: nothing written
    assert d.persist.records == records + 1


def test_failed_requests_write_nothing(tmp_path):
    d = load(tmp_path)
    s = d.open_session(lambda data: None, name="t", privileged=False, domid=5)
    records = d.persist.records
    d.handle(s, Packet(Op.WRITE, 1, 0, b"/tool/x\0v"))      # EACCES
    d.handle(s, Packet(Op.RM, 2, 0, b"/nonexistent/x\0"))   # ENOENT
    d.flush()
    assert d.persist.records == records


def test_records_are_framed_with_length_and_crc(tmp_path):
    d = load(tmp_path)
    s = d.open_session(lambda data: None, name="t")
    d.handle(s, Packet(Op.WRITE, 1, 0, b"/x\0y"))
    d.flush()
    with open(tmp_path / persist.JOURNAL_NAME, "rb") as f:
        data = f.read()
    magic, length, crc = RECORD.unpack_from(data, FILE_HEADER.size)
    assert magic == b"XSDR"
    assert FILE_HEADER.size + RECORD.size + length == d.persist.journal_size
    assert not data[d.persist.journal_size:].strip(b"\0")      # then zeros allocated ahead
