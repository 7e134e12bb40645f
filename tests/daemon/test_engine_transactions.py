"""TRANSACTION_START and TRANSACTION_END answered by the C request path on a real daemon.

Two real daemons, one with the engine and one with ``--python-requests`` (every
request through dispatch), get the same transactions from the same clients: a
privileged writer starting, writing in (batches sent in one write), committing
and aborting transactions, a second writer changing nodes between (conflicts:
EAGAIN), a commit removing a subtree, and a watcher on what the transactions
change.  Every connection must receive the same packets in the same order on
both (the commit's events before END's reply, merged per node), and the engine
daemon's memreport must show that its engine answered the starts and ends.
"""
import random

from xenstore_protocol import Op, Packet

from tests.wire import RawClient

WATCHES = [b"/t", b"/t/a/deep", b"/u"]


def script(seed: int, count: int = 60) -> list:
    """``[(batch, end, interfere), ...]``: a transaction's requests, how it ends ("T" or
    "F", with or without the NUL), and the node the second writer changes before it ends
    (or None)."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        batch = []
        for _ in range(rng.randrange(1, 4)):
            path = rng.choice([b"/t/a", b"/t/a/deep", b"/t/b", b"/u/x", b"/t/c/d/e"])
            op = rng.choice([Op.WRITE] * 4 + [Op.READ, Op.MKDIR, Op.SET_PERMS])
            if op == Op.WRITE:
                payload = path + b"\0v%d" % i
            elif op == Op.SET_PERMS:
                payload = path + b"\0" + rng.choice([b"n0\0", b"n0\0r1\0"])
            else:
                payload = path + b"\0"
            batch.append((op, payload))
        if i % 9 == 4:
            batch.append((Op.RM, b"/t/c\0"))            # a removal committed: Python fires it
        end = rng.choice([b"T\0", b"T\0", b"T\0", b"T", b"F\0"])
        # The second writer changes a node the transaction touched: a conflict.
        interfere = batch[0][1].split(b"\0")[0] if rng.random() < 0.2 else None
        out.append((batch, end, interfere))
    return out


def run(proc, steps) -> tuple:
    """Play ``steps``: -> (each connection's packets in order, the writer's memreport)."""
    clients = {name: RawClient(proc.socket_path, timeout=10)
               for name in ("writer", "other", "watcher")}
    try:
        writer, other, watcher = clients["writer"], clients["other"], clients["watcher"]
        other.ok(Op.WRITE, b"/t/c/d/e", b"seed")
        for i, path in enumerate(WATCHES):
            watcher.ok(Op.WATCH, path, b"w%d" % i)
        for i, (batch, end, interfere) in enumerate(steps):
            tx_id = int(writer.call(Op.TRANSACTION_START, b"").payload[:-1])
            req_ids = list(range(writer.next_req, writer.next_req + len(batch)))
            writer.next_req += len(batch)
            writer.sock.sendall(b"".join(Packet(op, req_id, tx_id, payload).encode()
                                         for req_id, (op, payload) in zip(req_ids, batch)))
            for req_id in req_ids:
                writer.reply(req_id)
            if interfere:
                other.ok(Op.WRITE, interfere, b"other%d" % i)
            writer.call(Op.TRANSACTION_END, payload=end, tx_id=tx_id)
        for client in clients.values():         # whatever was queued before arrives first
            client.call(Op.GET_DOMAIN_PATH, b"0")
        received = {name: [(p.op, p.req_id, p.tx_id, p.payload) for p in client.received]
                    for name, client in clients.items()}
        return received, writer.memreport()
    finally:
        for client in clients.values():
            client.close()


def c_path_counts(report: dict) -> dict:
    """memreport's "c-path-requests" line: request type name -> count."""
    return {name: int(n) for name, n in
            (item.split(":") for item in report.get("c-path-requests", "").split())}


def test_transactions_started_and_ended_in_c_tell_everyone_what_python_would(daemon_factory):
    steps = script(seed=3)
    with_engine, report = run(daemon_factory(name="engine"), steps)
    python_only, python_report = run(daemon_factory("--python-requests", name="python"), steps)
    for name in with_engine:
        assert with_engine[name] == python_only[name], name
    # The sequence is worth comparing: commits, conflicts and aborts, and events.
    ends = [p for p in with_engine["writer"] if p[0] in (Op.TRANSACTION_END, Op.ERROR)
            and p[2] != 0 and p[3] in (b"OK\0", b"EAGAIN\0")]
    assert sum(p[3] == b"EAGAIN\0" for p in ends) >= 3, ends
    assert sum(p[3] == b"OK\0" for p in ends) >= 40, ends
    assert sum(p[0] == Op.WATCH_EVENT for p in with_engine["watcher"]) > 40
    # The engine answered the starts and most ends (conflicts and removals are Python's).
    counts = c_path_counts(report)
    assert counts.get("TRANSACTION_START") == len(steps), counts
    assert counts.get("TRANSACTION_END", 0) >= len(steps) // 2, counts
    assert "c-path-requests" not in python_report
