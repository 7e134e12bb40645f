"""TRANSACTION_START and TRANSACTION_END answered by the C request path on a real daemon.

Two real daemons, one with the engine and one with ``--python-requests`` (every
request through dispatch), get the same transactions from the same clients: a
privileged writer starting, writing in (batches sent in one write), committing
and aborting transactions, a second writer changing nodes between (conflicts:
EAGAIN), a commit removing a subtree, and a watcher on what the transactions
change.  Every connection must receive the same packets in the same order on
both (the commit's events before END's reply, merged per node), and the engine
daemon's memreport must show that its engine answered the starts and ends.  The
same with guests on their rings: transactions holding removals, conflicting ones,
watchers on sockets and rings on, above and below what they remove.
"""
import random

from xenstore_protocol import Op

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
            batch.append((Op.RM, b"/t/c\0"))            # a removal committed: fired in C
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
            req_ids = writer.send_batch(batch, tx_id)
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
    # The engine answered the starts and every end, conflicts (EAGAIN) and removals too.
    counts = c_path_counts(report)
    assert counts.get("TRANSACTION_START") == len(steps), counts
    assert counts.get("TRANSACTION_END", 0) + counts.get("TRANSACTION_END/EAGAIN", 0) == \
        len(steps), counts
    assert "c-path-requests" not in python_report


# -- conflicting commits and commits holding removals, guests on their rings too -----------

GUEST_WATCHES = {
    "watcher": [b"/t", b"/t/c/d", b"/local/domain"],
    "g1": [b"data", b"/t/c", b"data/p/z"],         # "data": relative, /local/domain/1/data
    "g2": [b"/t", b"data/q"],
}


def removal_script(seed: int, count: int = 80) -> list:
    """``[(sender, batch, end, interferer, payload), ...]``: a transaction of the dom0
    writer or of a guest on its ring holding removals most of the time (subtrees removed,
    some made again), ended "T" mostly, and what another client writes before the END
    (a node the transaction read or wrote: a conflict), or None."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        sender = rng.choice(["writer", "writer", "g1", "g2"])
        if sender == "writer":
            paths = [b"/t/a", b"/t/c", b"/t/c/d", b"/t/c/d/e", b"/local/domain/1/data/p",
                     b"/local/domain/2/data/q/r"]
            perms = [b"n0\0", b"n0\0r1\0", b"n0\0r2\0", b"b1\0"]
        else:
            paths = [b"data/p", b"data/p/z", b"data/q", b"data/q/r", b"data/q/r/s"]
            perms = [b"n%s\0" % sender[1:].encode(), b"n%s\0r0\0" % sender[1:].encode()]
        batch = []
        for _ in range(rng.randrange(1, 5)):
            path = rng.choice(paths)
            op = rng.choice([Op.WRITE] * 3 + [Op.RM] * 3 + [Op.READ, Op.SET_PERMS])
            if op == Op.WRITE:
                payload = path + b"\0v" + b"%d" % rng.randrange(99)
            elif op == Op.SET_PERMS:
                payload = path + b"\0" + rng.choice(perms)
            else:
                payload = path + b"\0"
            batch.append((op, payload))
        end = rng.choice([b"T\0", b"T\0", b"T\0", b"T", b"F\0"])
        interferer = payload = None
        if rng.random() < 0.3:
            interferer = rng.choice(["other", sender if sender != "writer" else "other"])
            path = batch[0][1].split(b"\0")[0]
            payload = path + b"\0moved"
            if sender != "writer" and interferer == "other":
                payload = b"/local/domain/%s/%s\0moved" % (sender[1:].encode(), path)
        out.append((sender, batch, end, interferer, payload))
    return out


def run_removals(proc, steps) -> tuple:
    """Play ``steps`` with watchers on sockets and rings: -> (each connection's packets in
    order, memreport)."""
    from tests.daemon.test_engine_events import RecordingGuest, introduce_guests

    introduce_guests(proc)
    clients = {"writer": RawClient(proc.socket_path, timeout=10),
               "other": RawClient(proc.socket_path, timeout=10),
               "watcher": RawClient(proc.socket_path, timeout=10),
               "g1": RecordingGuest(proc.rundir, 1, timeout=10),
               "g2": RecordingGuest(proc.rundir, 2, timeout=10)}
    try:
        for name, paths in GUEST_WATCHES.items():
            for i, path in enumerate(paths):
                clients[name].ok(Op.WATCH, path, b"%s-%d" % (name.encode(), i))
        for sender, batch, end, interferer, payload in steps:
            client = clients[sender]
            tx_id = int(client.call(Op.TRANSACTION_START, b"").payload[:-1])
            if sender == "writer":      # the batch in one send
                req_ids = client.send_batch(batch, tx_id)
            else:
                req_ids = [client.send_packet(op, body, tx_id) for op, body in batch]
            for req_id in req_ids:
                client.reply(req_id)
            if interferer:
                clients[interferer].call(Op.WRITE, payload=payload)
            client.call(Op.TRANSACTION_END, payload=end, tx_id=tx_id)
        for client in clients.values():         # whatever was queued before arrives first
            client.call(Op.GET_DOMAIN_PATH, b"0")
        received = {name: [(p.op, p.req_id, p.tx_id, p.payload) for p in client.received]
                    for name, client in clients.items()}
        return received, clients["writer"].memreport()
    finally:
        for client in clients.values():
            client.close()


def test_conflicts_and_removals_ended_in_c_tell_everyone_what_python_would(daemon_factory):
    """Transactions of dom0 over a socket and of guests on their rings, holding removals,
    some conflicting (another client wrote what they touched), with watchers on other
    connections (sockets and rings; on, above and below the removed nodes, relative too):
    every connection gets the same packets with the engine and with every request in
    Python, and the engine answered every END (EAGAIN and removal commits included)."""
    steps = removal_script(seed=11)
    with_engine, report = run_removals(daemon_factory(name="engine"), steps)
    python_only, python_report = run_removals(
        daemon_factory("--python-requests", name="python"), steps)
    for name in with_engine:
        assert with_engine[name] == python_only[name], name
    ends = [p for name in ("writer", "g1", "g2") for p in with_engine[name]
            if p[0] in (Op.TRANSACTION_END, Op.ERROR) and p[2] != 0]
    conflicts = sum(p[3] == b"EAGAIN\0" for p in ends)
    assert conflicts >= 5 and sum(p[3] == b"OK\0" for p in ends) >= 40, ends
    events = {name: sum(p[0] == Op.WATCH_EVENT for p in packets)
              for name, packets in with_engine.items()}
    assert all(events[name] > 20 for name in GUEST_WATCHES), events
    counts = c_path_counts(report)
    assert counts.get("TRANSACTION_END", 0) + counts.get("TRANSACTION_END/EAGAIN", 0) == \
        len(steps), counts
    assert counts.get("TRANSACTION_END/EAGAIN") == conflicts, counts
    assert "c-path-requests" not in python_report
