"""Raw requests to xsd and to Debian's C xenstored: byte-identical replies and events.

Generation numbers and transaction ids are daemon-internal; the cases avoid them.  Where xsd
differs on purpose (numeric fields are strict decimal: C's atoi reads "x" as 0) the case is
left out here and the difference is listed in docs/compatibility.md.
"""
import random
import re
import time

import pytest

from xenstore_protocol import Op

from tests.wire import RawClient

W = Op.WRITE
CASES = [
    (W, b"/a/b\0v"), (Op.READ, b"/a/b\0"), (Op.READ, b"/a/b"), (Op.READ, b"/a\0"),
    (Op.READ, b"/nope\0"), (Op.READ, b"\0"), (Op.READ, b""), (Op.READ, b"/a/\0"),
    (Op.READ, b"//\0"), (Op.READ, b"/a.b\0"), (W, b"/nonul"), (W, b"/x\0"),
    (Op.DIRECTORY, b"/\0"), (Op.DIRECTORY, b"/a\0"), (Op.DIRECTORY, b"/none\0"),
    (Op.MKDIR, b"/a\0"), (Op.MKDIR, b"/m/n\0"), (Op.READ, b"/m\0"),
    (Op.RM, b"/m/none\0"), (Op.RM, b"/zz/none\0"), (Op.RM, b"/\0"), (Op.RM, b"/m\0"),
    (Op.GET_PERMS, b"/a\0"), (Op.SET_PERMS, b"/a\0n0\0r1\0"), (Op.GET_PERMS, b"/a/b\0"),
    (Op.SET_PERMS, b"/a\0"), (Op.SET_PERMS, b"/a\0q1\0"), (Op.SET_PERMS, b"/none\0n0\0"),
    (Op.SET_PERMS, b"/a\0r5\0"), (Op.GET_PERMS, b"/a\0"),
    (Op.WATCH, b"/a\0tok\0"), (Op.WATCH, b"/a\0tok\0"), (Op.WATCH, b"/a\0"),
    (Op.WATCH, b"/a\0t\0x\0"), (W, b"/a/c\0w"), (Op.UNWATCH, b"/a\0tok\0"),
    (Op.UNWATCH, b"/a\0tok\0"), (Op.WATCH, b"rel\0r\0"), (W, b"/local/domain/0/rel/k\0v"),
    (Op.WATCH, b"@introduceDomain\0i\0"), (Op.WATCH, b"@releaseDomain\0r\0"),
    (Op.INTRODUCE, b"5\0" b"1\0" b"1\0"), (Op.INTRODUCE, b"5\0" b"1\0" b"1\0"),
    (Op.IS_DOMAIN_INTRODUCED, b"5\0"), (Op.IS_DOMAIN_INTRODUCED, b"0\0"),
    (Op.GET_DOMAIN_PATH, b"5\0"), (Op.RESUME, b"0\0"),
    (Op.RELEASE, b"0\0"), (Op.RELEASE, b"8\0"), (Op.SET_TARGET, b"8\0" b"0\0"),
    (Op.TRANSACTION_END, b"T\0"), (Op.ERROR, b"x\0"), (Op.WATCH_EVENT, b"x\0"),
    (20, b"x\0"), (30, b"\0"), (Op.RESET_WATCHES, b""), (W, b"/a/d\0after-reset"),
    (Op.CONTROL, b"bogus\0"), (Op.CONTROL, b"check\0"),
    # Issue 14's wire differences.  Path length: path-max (2048) for dom0 too, not counting
    # a leading /local/domain/<domid>/.
    (W, b"/p" + b"x" * 2047 + b"\0v"), (W, b"/p" + b"x" * 2046 + b"\0v"),
    (W, b"/local/domain/0/p" + b"x" * 2046 + b"\0v"), (W, b"/local/domain/0/" + b"x" * 2049 + b"\0v"),
    (W, b"/local/domain/12345/" + b"y" * 2048 + b"\0v"), (W, b"/local/domain/x/" + b"y" * 2034 + b"\0v"),
    (W, b"r" * 2048 + b"\0v"), (W, b"r" * 2049 + b"\0v"), (Op.READ, b"/q" + b"x" * 2047 + b"\0"),
    # SET_PERMS naming a domain that does not exist as the owner: ENOENT; as another entry: fine.
    (W, b"/sp\0v"), (Op.SET_PERMS, b"/sp\0r70000\0"), (Op.SET_PERMS, b"/sp\0n0\0r70000\0"),
    (Op.GET_PERMS, b"/sp\0"),
    # RM with watches below: deleted nodes children first, then the root and its ancestors;
    # none for a watched path below that did not exist.
    (W, b"/rm/s/t\0v"), (W, b"/rm/s/u/v/w\0v"), (W, b"/rm/s/u/v2\0v"),
    (Op.WATCH, b"/rm\0parent\0"), (Op.WATCH, b"/rm/s/t/missing\0deep\0"),
    (Op.WATCH, b"/rm/s\0own\0"), (Op.WATCH, b"/rm/s/u/v2\0v2\0"), (Op.WATCH, b"/rm/s/u/v\0v\0"),
    (Op.WATCH, b"/rm/s/u/v/w\0w\0"), (Op.WATCH, b"/rm/s/u\0u\0"), (Op.WATCH, b"/rm/s/t\0t\0"),
    (Op.RM, b"/rm/s\0"), (Op.RM, b"/rm/s\0"), (Op.RM, b"/rm/s/none\0"),
    # DIRECTORY_PART with an offset past the end: the generation and an empty list.
    (W, b"/dp/a\0v"), (Op.DIRECTORY_PART, b"/dp\0" b"2\0"), (Op.DIRECTORY_PART, b"/dp\0" b"100\0"),
    (Op.DIRECTORY_PART, b"/dp\0" b"1\0"),
    # CONTROL: C xenstored's texts and refusals.
    (Op.CONTROL, b"quota\0"), (Op.CONTROL, b"quota-soft\0"), (Op.CONTROL, b"quota\0set\0nodes\0" b"0\0"),
    (Op.CONTROL, b"quota\0set\0bogus\0" b"5\0"), (Op.CONTROL, b"quota\0" b"5\0"),
    (Op.CONTROL, b"quota\0" b"0\0" b"1\0"), (Op.CONTROL, b"quota-soft\0set\0nodes\0" b"5\0"),
    (Op.CONTROL, b"quota-soft\0set\0memory\0" b"100\0"), (Op.CONTROL, b"quota-soft\0"),
    (Op.CONTROL, b"quota\0set\0path-max\0" b"10\0"), (W, b"/abcdefghijk\0v"), (W, b"/abcdefghi\0v"),
    (Op.CONTROL, b"quota\0set\0path-max\0" b"2048\0"), (Op.CONTROL, b"quota\0"),
    (Op.CONTROL, b"log\0"), (Op.CONTROL, b"log\0on\0"), (Op.CONTROL, b"log\0off\0"),
    (Op.CONTROL, b"print\0"), (Op.CONTROL, b"print\0a\0b\0"), (Op.CONTROL, b"print\0hi\0"),
    (Op.CONTROL, b"check\0x\0"), (Op.CONTROL, b"help\0x\0"), (Op.CONTROL, b"logfile\0"),
    (Op.CONTROL, b"memreport\0a\0b\0"), (Op.CONTROL, b"\0"),
]
# What the generation numbers in DIRECTORY_PART replies become before comparing.
_GEN = re.compile(rb"\A[0-9]+\0")


def replay(socket_path):
    out = []
    with RawClient(socket_path) as xs:
        for op, payload in CASES:
            packet = xs.call(op, payload=payload)
            reply = packet.payload
            if op == Op.DIRECTORY_PART and packet.op == op:
                reply = _GEN.sub(b"<gen>\0", reply)
            out.append((op, payload, packet.op, reply, xs.quiet_events(0.05)))
    return out


def test_raw_replies_match_c_xenstored(daemon_factory, cxenstored):
    ours = replay(daemon_factory("--no-domain-init").socket_path)
    theirs = replay(cxenstored.socket_path)
    mismatches = [(mine, ref) for mine, ref in zip(ours, theirs) if mine != ref]
    assert not mismatches, "\n".join(f"xsd {m}\ncx  {r}" for m, r in mismatches)


def test_control_help_starts_with_c_xenstoreds_text(daemon_factory, cxenstored):
    with RawClient(cxenstored.socket_path) as cx:
        theirs = cx.ok(Op.CONTROL, b"help")[:-1]
    with RawClient(daemon_factory("--no-domain-init").socket_path) as xs:
        ours = xs.ok(Op.CONTROL, b"help")[:-1]
    assert ours.startswith(theirs) and len(ours) > len(theirs)     # then xsd's own


def test_control_quota_of_a_domain_has_c_xenstoreds_layout(daemon_factory, cxenstored):
    """``quota <domid>``: same lines and columns; the numbers are each daemon's own."""
    def layout(socket_path):
        with RawClient(socket_path) as xs:
            return re.sub(rb" *[0-9]+\n", b" <n>\n", xs.ok(Op.CONTROL, b"quota", b"0"))
    assert layout(daemon_factory("--no-domain-init").socket_path) == layout(cxenstored.socket_path)


def _transaction_story(socket_path):
    """Transactions as the random test found them differ: what each connection saw."""
    seen = []
    with RawClient(socket_path) as a, RawClient(socket_path) as b:
        a.call(Op.RM, payload=b"/tx\0")
        b.ok(Op.WATCH, b"/tx", b"w")
        b.ok(Op.WATCH, b"/tx/n", b"w")          # same token, two paths: one event per change
        b.quiet_events(0.05)
        # 1. A missing node read in a transaction: its ancestors were looked at, so a change
        #    to them outside makes the commit conflict.
        tx = int(a.ok(Op.TRANSACTION_START, b"")[:-1])
        a.ok(Op.WRITE, payload=b"/tx/p\0v")
        seen.append(a.call(Op.READ, payload=b"/tx/p/missing\0", tx_id=tx)[3])
        a.ok(Op.RM, b"/tx/p")
        seen.append(a.call(Op.TRANSACTION_END, payload=b"T\0", tx_id=tx)[3])
        seen.append(b.quiet_events(0.05))
        # 2. Events at commit: one per node, in the order the transaction first touched them;
        #    none for a node made and removed inside it.
        a.ok(Op.WRITE, payload=b"/tx/n\0v")
        b.quiet_events(0.05)
        tx = int(a.ok(Op.TRANSACTION_START, b"")[:-1])
        a.call(Op.READ, payload=b"/tx/n\0", tx_id=tx)
        for payload in (b"/tx/m\0" b"1", b"/tx/n\0" b"1", b"/tx/m\0" b"2", b"/tx/n\0" b"2",
                        b"/tx/gone/x\0" b"1"):
            a.call(Op.WRITE, payload=payload, tx_id=tx)
        a.call(Op.RM, payload=b"/tx/gone\0", tx_id=tx)
        seen.append(a.call(Op.TRANSACTION_END, payload=b"T\0", tx_id=tx)[3])
        seen.append(b.quiet_events(0.1))
    return seen


def test_transaction_conflicts_and_commit_events_match_c_xenstored(daemon_factory, cxenstored):
    ours = _transaction_story(daemon_factory("--no-domain-init").socket_path)
    theirs = _transaction_story(cxenstored.socket_path)
    assert ours == theirs
    assert theirs[1] == b"EAGAIN\0"


def _ancestors_story(socket_path):
    """Which ancestors of a missing node a transaction looks at (random sequence, seed 4).

    C xenstored reads the parent, then the grandparent, ... until one exists, and only
    those are the transaction's: their child lists are read as they are then, and only a
    change to them outside conflicts at commit.  Ancestors above the first existing one
    (here /tx/b and /) are read live when first used, and changing them does not conflict.
    """
    seen = []
    with RawClient(socket_path) as a, RawClient(socket_path) as b:
        a.call(Op.RM, payload=b"/tx\0")
        a.ok(Op.WRITE, payload=b"/tx/b/c\0")
        # 1. WRITE below an existing node: /tx/b (the grandparent) is not read, so a child
        #    added to it outside shows in the transaction and does not conflict.
        tx = int(a.ok(Op.TRANSACTION_START, b"")[:-1])
        seen.append(a.call(Op.WRITE, payload=b"/tx/b/c/c\0" b"1", tx_id=tx)[3])
        b.ok(Op.WRITE, payload=b"/tx/b/dd\0")
        b.ok(Op.WRITE, payload=b"/other\0")
        seen.append(a.call(Op.DIRECTORY, payload=b"/tx/b\0", tx_id=tx)[3])
        seen.append(a.call(Op.DIRECTORY_PART, payload=b"/tx/b\0" b"1\0", tx_id=tx)[3].split(b"\0", 1)[1])
        seen.append(a.call(Op.TRANSACTION_END, payload=b"T\0", tx_id=tx)[3])
        # 2. READ of a missing node: /tx/b/x/y, /tx/b/x and /tx/b are read, / is not.
        tx = int(a.ok(Op.TRANSACTION_START, b"")[:-1])
        seen.append(a.call(Op.READ, payload=b"/tx/b/x/y/z\0", tx_id=tx)[3])
        b.ok(Op.RM, b"/other")
        seen.append(a.call(Op.TRANSACTION_END, payload=b"T\0", tx_id=tx)[3])
    return seen


def test_transaction_reads_the_ancestors_c_xenstored_reads(daemon_factory, cxenstored):
    ours = _ancestors_story(daemon_factory("--no-domain-init").socket_path)
    theirs = _ancestors_story(cxenstored.socket_path)
    assert ours == theirs
    assert theirs[1] == b"c\0dd\0" and theirs[3] == b"OK\0" and theirs[5] == b"OK\0"


# -- random request sequences ------------------------------------------------------------
# Both daemons get the same seeded sequences over several connections, inside and outside
# transactions; replies and events must be byte-identical once transaction ids and
# generations (daemon-internal) are normalised.  Socket connections are dom0 in the anchors'
# set-up (no ring is driven there), so the guest side cannot be compared with C xenstored
# here; tests/guests cover it against xsd alone.

NAMES = [b"a", b"b", b"c", b"dd"]
TOKENS = [b"t1", b"t2"]
SEEDS = range(5)
STEPS = 120


def _path(rng):
    return b"/f/" + b"/".join(rng.choice(NAMES) for _ in range(rng.randint(1, 3)))


def _request(rng):
    """One request (op, payload, in_tx) from a small space, so that paths collide."""
    kind = rng.randrange(12)
    path = _path(rng)
    if kind < 3:
        return Op.WRITE, path + b"\0" + rng.choice([b"", b"1", b"val"]), True
    if kind == 3:
        return Op.MKDIR, path + b"\0", True
    if kind == 4:
        return Op.RM, path + b"\0", True
    if kind == 5:
        return Op.READ, path + b"\0", True
    if kind == 6:
        return Op.DIRECTORY, path + b"\0", True
    if kind == 7:
        return Op.GET_PERMS, path + b"\0", True
    if kind == 8:
        perms = rng.choice([b"n0\0", b"r0\0", b"b0\0r1\0", b"w0\0n5\0"])
        return Op.SET_PERMS, path + b"\0" + perms, True
    if kind == 9:
        return Op.WATCH, path + b"\0" + rng.choice(TOKENS) + b"\0", False
    if kind == 10:
        return Op.UNWATCH, path + b"\0" + rng.choice(TOKENS) + b"\0", False
    return Op.DIRECTORY_PART, path + b"\0" + rng.choice([b"0", b"1", b"3", b"50"]) + b"\0", True


def _connect(socket_path):
    """C xenstored accepts one connection per loop turn; a burst may find its backlog full."""
    for _ in range(100):
        try:
            return RawClient(socket_path)
        except BlockingIOError:
            time.sleep(0.02)
    return RawClient(socket_path)


def _drive(socket_path, seed, transactions):
    """Run one seeded sequence on three connections; return what each connection saw."""
    rng = random.Random(seed)
    seen = []
    clients = [_connect(socket_path) for _ in range(3)]
    tx = [0, 0, 0]             # open transaction per connection (our id), 0: none
    try:
        for _ in range(STEPS):
            i = rng.randrange(3)
            xs = clients[i]
            roll = rng.random()
            if transactions and roll < 0.08 and not tx[i]:
                reply = xs.call(Op.TRANSACTION_START, payload=b"\0")
                tx[i] = int(reply.payload[:-1]) if reply.op == Op.TRANSACTION_START else 0
                seen.append((i, "start", reply.op))
                continue
            if roll < 0.14 and tx[i]:
                reply = xs.call(Op.TRANSACTION_END, payload=rng.choice([b"T\0", b"F\0"]),
                                tx_id=tx[i])
                tx[i] = 0
                seen.append((i, "end", reply.op, reply.payload))
            else:
                op, payload, tx_able = _request(rng)
                tx_id = tx[i] if tx_able else 0
                reply = xs.call(op, payload=payload, tx_id=tx_id)
                body = reply.payload
                if op == Op.DIRECTORY_PART and reply.op == op:
                    body = _GEN.sub(b"<gen>\0", body)
                seen.append((i, int(op), payload, bool(tx_id), reply.op, body))
            for j, other in enumerate(clients):
                events = other.quiet_events(0.002) if j != i else xs.quiet_events(0.002)
                if events:
                    seen.append((j, "events", events))
        for j, other in enumerate(clients):
            seen.append((j, "events", other.quiet_events(0.05)))
    finally:
        for xs in clients:
            xs.close()
    return seen


@pytest.mark.parametrize("transactions", [False, True])
def test_random_sequences_match_c_xenstored(daemon_factory, cxenstored, transactions):
    """Bounded: 5 seeds x 120 requests on each daemon (a few seconds).  Seeds 0-40 were run
    by hand too; what they found is fixed (docs/compatibility.md)."""
    ours_daemon = daemon_factory("--no-domain-init")
    started = time.monotonic()
    for seed in SEEDS:
        # A fresh subtree per seed: the daemons' trees stay alike between runs.
        for sock in (ours_daemon.socket_path, cxenstored.socket_path):
            with RawClient(sock) as xs:
                xs.call(Op.RM, payload=b"/f\0")
        ours = _drive(ours_daemon.socket_path, seed, transactions)
        theirs = _drive(cxenstored.socket_path, seed, transactions)
        for mine, ref in zip(ours, theirs):
            assert mine == ref, f"seed {seed}: first difference\nxsd {mine}\ncx  {ref}"
        assert len(ours) == len(theirs)
    assert time.monotonic() - started < 120
