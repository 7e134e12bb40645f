"""A mixed load that remembers what the daemon acknowledged, for kill -9 tests.

Each of ``clients`` connections owns the subtree ``/crash/c<i>`` and has at
most one request in flight, so after a crash every client's subtree is in one
of two states: what was acknowledged, or that plus its one unanswered
request (a transaction's TRANSACTION_END included: all of it or nothing).
``verify`` reads the subtree back, values and children order, and accepts
exactly those two.  Values are unique per request, so a stale value shows.
"""
import random
import select
import socket

from xenstore_protocol import Decoder, Op, Packet

KEYS = 12


class Model:
    """One client's subtree as acknowledged: children in creation order, their values."""

    def __init__(self):
        self.values = {}            # name -> value (bytes); tx results under "tx/<x>"
        self.children = []          # names directly under /crash/c<i>, creation order
        self.tx_children = []

    def copy(self) -> "Model":
        m = Model()
        m.values = dict(self.values)
        m.children = list(self.children)
        m.tx_children = list(self.tx_children)
        return m

    def write(self, name: str, value: bytes) -> None:
        if name not in self.children:
            self.children.append(name)
        self.values[name] = value

    def rm(self, name: str) -> None:
        if name in self.children:
            self.children.remove(name)
            del self.values[name]

    def commit(self, values: dict) -> None:
        if "tx" not in self.children:
            self.children.append("tx")
        for name, value in values.items():
            if name not in self.tx_children:
                self.tx_children.append(name)
            self.values["tx/" + name] = value


class Client:
    """One connection: requests in sequence, one in flight."""

    def __init__(self, index: int, path: str, model: Model, rng: random.Random, tag: str):
        self.index = index
        self.base = f"/crash/c{index}"
        self.model = model
        self.rng = rng
        self.tag = tag
        self.seq = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.decoder = Decoder()
        self.req_id = 0
        self.pending = None        # what the request in flight does to the model, if applied
        self.tx = None             # (tx_id, {name: value}) while building a transaction
        self.acked = 0
        self.dead = False

    def _value(self) -> bytes:
        self.seq += 1
        return f"{self.tag}-{self.index}-{self.seq}".encode()

    def _send(self, op: int, payload: bytes, tx_id: int = 0) -> None:
        self.req_id += 1
        self.sock.sendall(Packet(op, self.req_id, tx_id, payload).encode())

    def next_request(self) -> None:
        rng = self.rng
        if self.tx is not None:
            tx_id, values = self.tx
            if len(values) < 3:
                name = "abc"[len(values)]
                value = self._value()
                values[name] = value
                self.pending = ("tx-write", None)
                self._send(Op.WRITE, f"{self.base}/tx/{name}".encode() + b"\0" + value, tx_id)
            else:
                self.pending = ("commit", dict(values))
                self._send(Op.TRANSACTION_END, b"T\0", tx_id)
            return
        roll = rng.random()
        name = f"k{rng.randrange(KEYS)}"
        if roll < 0.6:
            value = self._value()
            self.pending = ("write", name, value)
            self._send(Op.WRITE, f"{self.base}/{name}".encode() + b"\0" + value)
        elif roll < 0.85:
            self.pending = ("rm", name)
            self._send(Op.RM, f"{self.base}/{name}".encode() + b"\0")
        else:
            self.pending = ("start",)
            self._send(Op.TRANSACTION_START, b"\0")

    def received(self, packet: Packet) -> None:
        """The reply to the request in flight: the model takes it."""
        kind = self.pending[0]
        if packet.op == Op.ERROR:
            if kind == "commit" and packet.payload == b"EAGAIN\0":
                self.tx = None          # nobody else writes here, but a retry is what clients do
                self.pending = None
                return
            raise AssertionError(f"client {self.index}: {kind} failed: {packet.payload!r}")
        if kind == "write":
            self.model.write(self.pending[1], self.pending[2])
        elif kind == "rm":
            self.model.rm(self.pending[1])
        elif kind == "start":
            self.tx = (int(packet.payload.rstrip(b"\0")), {})
        elif kind == "commit":
            self.model.commit(self.pending[1])
            self.tx = None
        self.pending = None
        self.acked += 1

    def outcome_if_applied(self) -> Model:
        """The model had the request in flight been carried out."""
        model = self.model.copy()
        if self.pending is not None:
            kind = self.pending[0]
            if kind == "write":
                model.write(self.pending[1], self.pending[2])
            elif kind == "rm":
                model.rm(self.pending[1])
            elif kind == "commit":
                model.commit(self.pending[1])
        return model


def run(path: str, models: list, rng: random.Random, tag: str, stop) -> list:
    """Drive one client per model until ``stop()`` or the daemon dies; return the clients."""
    clients = [Client(i, path, m, rng, tag) for i, m in enumerate(models)]
    by_fd = {c.sock.fileno(): c for c in clients}
    try:
        for client in clients:
            client.next_request()
    except OSError:
        return clients
    live = set(by_fd)
    while live and not stop():
        ready, _, _ = select.select(list(live), [], [], 0.5)
        for fd in ready:
            client = by_fd[fd]
            try:
                data = client.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                client.dead = True
                live.discard(fd)
                continue
            for packet in client.decoder.feed(data):
                if packet.op == Op.WATCH_EVENT:
                    continue
                client.received(packet)
                try:
                    client.next_request()
                except OSError:
                    client.dead = True
                    live.discard(fd)
    for client in clients:
        client.sock.close()
    return clients


def read_subtree(c, index: int) -> Model:
    """What the daemon holds under /crash/c<index>, as a Model (``c`` is a tests.wire.RawClient)."""
    base = f"/crash/c{index}".encode()
    model = Model()
    reply = c.call(Op.DIRECTORY, base)
    if reply.op == Op.ERROR:
        return model
    model.children = [n.decode() for n in reply.payload.split(b"\0")[:-1]]
    for name in model.children:
        if name == "tx":
            tx = c.ok(Op.DIRECTORY, base + b"/tx")
            model.tx_children = [n.decode() for n in tx.split(b"\0")[:-1]]
            for sub in model.tx_children:
                model.values["tx/" + sub] = c.ok(Op.READ, base + b"/tx/" + sub.encode())
        else:
            model.values[name] = c.ok(Op.READ, base + b"/" + name.encode())
    return model


def same(a: Model, b: Model) -> bool:
    return a.values == b.values and a.children == b.children and a.tx_children == b.tx_children


def verify(c, clients: list) -> list:
    """Check every client's subtree; return the models now true (for the next round).

    Raises AssertionError naming the client when the daemon holds neither
    the acknowledged state nor that plus the request in flight.
    """
    models = []
    for client in clients:
        found = read_subtree(c, client.index)
        acked = client.model
        applied = client.outcome_if_applied()
        if same(found, acked):
            models.append(acked)
        elif same(found, applied):
            models.append(applied)
        else:
            raise AssertionError(
                f"client {client.index}: after the crash the daemon holds\n  {found.children} "
                f"{found.tx_children} {found.values}\nbut acknowledged was\n  {acked.children} "
                f"{acked.tx_children} {acked.values}\nin flight: {client.pending}")
    return models
