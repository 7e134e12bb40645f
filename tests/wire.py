"""A raw xenstore client for tests: exact bytes on a real socket, nothing hidden."""
import select
import socket

from xenstore_protocol import Decoder, Op, Packet, join_fields


class RawClient:
    """Blocking client that keeps watch events apart from replies."""

    def __init__(self, path: str, timeout: float = 5.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.decoder = Decoder()
        self.events = []          # WATCH_EVENT packets, in arrival order
        self.received = []        # every packet, in arrival order
        self.replies = []
        self.next_req = 1
        self.timeout = timeout

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_packet(self, op: int, payload: bytes, tx_id: int = 0, req_id=None) -> int:
        if req_id is None:
            req_id = self.next_req
            self.next_req += 1
        self.sock.sendall(Packet(op, req_id, tx_id, payload).encode())
        return req_id

    def send_batch(self, requests, tx_id: int = 0) -> list:
        """``requests`` ([(op, payload)]) in one send, so the daemon may read them as one
        batch; their req_ids."""
        req_ids = list(range(self.next_req, self.next_req + len(requests)))
        self.next_req += len(requests)
        self.sock.sendall(b"".join(Packet(op, req_id, tx_id, payload).encode()
                                   for req_id, (op, payload) in zip(req_ids, requests)))
        return req_ids

    def _pump(self, timeout) -> bool:
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return False
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionResetError("daemon closed the connection")
        for packet in self.decoder.feed(data):
            self.received.append(packet)
            (self.events if packet.op == Op.WATCH_EVENT else self.replies).append(packet)
        return True

    def reply(self, req_id=None) -> Packet:
        """The next reply (with that req_id, if given)."""
        while True:
            for i, packet in enumerate(self.replies):
                if req_id is None or packet.req_id == req_id:
                    return self.replies.pop(i)
            if not self._pump(self.timeout):
                raise TimeoutError("no reply")

    def call(self, op: int, *fields: bytes, payload=None, tx_id: int = 0) -> Packet:
        """Send one request (fields NUL-terminated, or a raw payload) and wait for its reply."""
        if payload is None:
            payload = join_fields(*fields)
        return self.reply(self.send_packet(op, payload, tx_id))

    def ok(self, op: int, *fields: bytes, payload=None, tx_id: int = 0) -> bytes:
        """Like call, but the reply must not be an ERROR; returns its payload."""
        packet = self.call(op, *fields, payload=payload, tx_id=tx_id)
        assert packet.op == op, f"{Op(op).name} failed: {packet.payload!r}"
        return packet.payload

    def error(self, op: int, *fields: bytes, payload=None, tx_id: int = 0) -> str:
        """Like call, but the reply must be an ERROR; returns its name."""
        packet = self.call(op, *fields, payload=payload, tx_id=tx_id)
        assert packet.op == Op.ERROR, f"{Op(op).name} unexpectedly answered {packet.payload!r}"
        assert packet.payload.endswith(b"\0")
        return packet.payload[:-1].decode()

    def memreport(self) -> dict:
        """CONTROL memreport as a dict of its "name: value" lines."""
        text = self.ok(Op.CONTROL, b"memreport").decode().rstrip("\0")
        return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)

    def check(self) -> None:
        """CONTROL check: the daemon's own consistency check must answer OK."""
        assert self.ok(Op.CONTROL, b"check") == b"OK\0"

    def wait_events(self, count: int, timeout: float = 5.0) -> list:
        """Wait until at least ``count`` events arrived; return and clear them."""
        import time
        deadline = time.monotonic() + timeout
        while len(self.events) < count:
            left = deadline - time.monotonic()
            if left <= 0 or not self._pump(left):
                break
        events, self.events = self.events, []
        return [tuple(e.payload.split(b"\0")[:2]) for e in events]

    def quiet_events(self, wait: float = 0.2) -> list:
        """Every event that arrives within ``wait`` seconds of silence."""
        while self._pump(wait):
            pass
        events, self.events = self.events, []
        return [tuple(e.payload.split(b"\0")[:2]) for e in events]
