"""A guest's end of xenstore over the mock hypervisor's ring page, for tests and demos.

``GuestClient(rundir, domid)`` maps domain ``domid``'s ring page, binds the
domain's event-channel socket and speaks the protocol exactly as a guest
kernel's xenbus driver would: requests into ``req``, replies and watch
events out of ``rsp``, a notification after each change of the ring.  To the
daemon it is that domain, unprivileged: a test using it sees ``EACCES``
where domain ``domid`` must.

``SocketClient(path)`` offers the same calls over the daemon's Unix socket
(dom0, privileged); ``xsd-hv`` uses it for the toolstack's steps.

Both are blocking and keep watch events apart from replies, like
``tests/wire.RawClient``: ``call`` returns the reply Packet, ``ok`` its
payload (raising XenstoreError on an ERROR reply), ``error`` the error name.
"""
import errno
import mmap
import os
import select
import socket
import time

from xenstore_protocol import Decoder, Op, Packet, XenstoreError, join_fields

from ..transport.ring import XENSTORE_CONNECTED, XENSTORE_RECONNECT, Ring
from .mock import PAGE_SIZE, XENSTORED_EVTCHN, MockControl


class UnexpectedReply(Exception):
    """``error()`` got a success, or a reply of another type."""


class XenstoreClient:
    """The protocol half: packets in and out; transports implement ``_send`` and ``_pump``."""

    def __init__(self, timeout: float = 5.0):
        self.timeout = timeout
        self.decoder = Decoder()
        self.events = []        # WATCH_EVENT packets not yet taken
        self.replies = []
        self.next_req = 1

    def _send(self, data: bytes) -> None:
        raise NotImplementedError

    def _pump(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for input; True if any packet bytes arrived."""
        raise NotImplementedError

    def _deliver(self, data: bytes) -> None:
        for packet in self.decoder.feed(data):
            (self.events if packet.op == Op.WATCH_EVENT else self.replies).append(packet)

    def send_packet(self, op: int, payload: bytes, tx_id: int = 0, req_id=None) -> int:
        if req_id is None:
            req_id = self.next_req
            self.next_req = (self.next_req + 1) & 0xFFFFFFFF
        self._send(Packet(op, req_id, tx_id, payload).encode())
        return req_id

    def reply(self, req_id=None) -> Packet:
        deadline = time.monotonic() + self.timeout
        while True:
            for i, packet in enumerate(self.replies):
                if req_id is None or packet.req_id == req_id:
                    return self.replies.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply from xenstored")
            self._pump(left)

    def call(self, op: int, *fields: bytes, payload=None, tx_id: int = 0) -> Packet:
        if payload is None:
            payload = join_fields(*fields)
        return self.reply(self.send_packet(op, payload, tx_id))

    def ok(self, op: int, *fields: bytes, payload=None, tx_id: int = 0) -> bytes:
        packet = self.call(op, *fields, payload=payload, tx_id=tx_id)
        if packet.op == Op.ERROR:
            raise XenstoreError(packet.payload.rstrip(b"\0").decode("ascii", "replace"),
                                f"{Op(op).name} refused")
        return packet.payload

    def error(self, op: int, *fields: bytes, payload=None, tx_id: int = 0) -> str:
        packet = self.call(op, *fields, payload=payload, tx_id=tx_id)
        if packet.op != Op.ERROR:
            raise UnexpectedReply(f"{Op(op).name} answered {packet.payload!r}, not an error")
        return packet.payload.rstrip(b"\0").decode("ascii", "replace")

    # -- the usual requests ------------------------------------------------------
    def read(self, path: str, tx_id: int = 0) -> bytes:
        return self.ok(Op.READ, path.encode(), tx_id=tx_id)

    def write(self, path: str, value: bytes = b"", tx_id: int = 0) -> None:
        self.ok(Op.WRITE, payload=path.encode() + b"\0" + value, tx_id=tx_id)

    def mkdir(self, path: str, tx_id: int = 0) -> None:
        self.ok(Op.MKDIR, path.encode(), tx_id=tx_id)

    def rm(self, path: str, tx_id: int = 0) -> None:
        self.ok(Op.RM, path.encode(), tx_id=tx_id)

    def directory(self, path: str, tx_id: int = 0) -> list:
        data = self.ok(Op.DIRECTORY, path.encode(), tx_id=tx_id)
        return [name.decode() for name in data.split(b"\0")[:-1]]

    def get_perms(self, path: str) -> list:
        return [p.decode() for p in self.ok(Op.GET_PERMS, path.encode()).split(b"\0")[:-1]]

    def set_perms(self, path: str, *perms: str) -> None:
        self.ok(Op.SET_PERMS, path.encode(), *(p.encode() for p in perms))

    def watch(self, path: str, token: bytes) -> None:
        self.ok(Op.WATCH, path.encode(), token)

    def transaction_start(self) -> int:
        return int(self.ok(Op.TRANSACTION_START, payload=b"\0").rstrip(b"\0"))

    def transaction_end(self, tx_id: int, commit: bool = True) -> None:
        self.ok(Op.TRANSACTION_END, b"T" if commit else b"F", tx_id=tx_id)

    def wait_events(self, count: int, timeout: float = 5.0) -> list:
        """Wait until ``count`` events arrived (or ``timeout``); return and clear them."""
        deadline = time.monotonic() + timeout
        while len(self.events) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._pump(left)
        return self.take_events()

    def quiet_events(self, wait: float = 0.2) -> list:
        """Every event that arrives until ``wait`` seconds pass without input."""
        while self._pump(wait):
            pass
        return self.take_events()

    def take_events(self) -> list:
        events, self.events = self.events, []
        return [tuple(e.payload.split(b"\0")[:2]) for e in events]


class GuestClient(XenstoreClient):
    """Domain ``domid`` of the mock hypervisor in ``rundir``, on its ring page."""

    def __init__(self, rundir, domid: int, timeout: float = 5.0):
        super().__init__(timeout)
        self.rundir = str(rundir)
        self.domid = domid
        row = MockControl(self.rundir).record(domid)
        ring_path = row.path("ring", self.rundir)
        self.evtchn_path = row.path("evtchn", self.rundir)
        if ring_path is None or self.evtchn_path is None:
            raise ValueError(f"domain {domid} has no xenstore ring in the mock hypervisor")
        self.port = int(row["store_port"])
        self.mfn = int(row["store_mfn"])
        fd = os.open(ring_path, os.O_RDWR | os.O_CLOEXEC)
        try:
            self._map = mmap.mmap(fd, PAGE_SIZE)
        finally:
            os.close(fd)
        self.ring = Ring(self._map)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            os.unlink(self.evtchn_path)      # left by an earlier client of this domain
        except FileNotFoundError:
            pass
        self.sock.bind(self.evtchn_path)
        self.sock.setblocking(False)
        self.daemon_addr = os.path.join(self.rundir, XENSTORED_EVTCHN)
        self.notifications = 0

    def close(self) -> None:
        self.sock.close()
        try:
            os.unlink(self.evtchn_path)
        except FileNotFoundError:
            pass
        self.ring.release()
        self._map.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- event channel ------------------------------------------------------------
    def notify(self) -> None:
        """Signal the daemon (xenevtchn_notify on the guest's port).

        The daemon's socket queue is shared by every guest and short
        (net.unix.max_dgram_qlen, often 10): when it is full of other guests'
        datagrams, dropping ours would lose our wakeup, so we wait for room.
        """
        message = b"evtchn %d %d" % (self.domid, self.port)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self.sock.sendto(message, self.daemon_addr)
                return
            except (BlockingIOError, InterruptedError):
                if time.monotonic() > deadline:
                    raise TimeoutError("xenstored does not take notifications") from None
                time.sleep(0.001)
            except OSError as err:
                # No daemon (yet): like a pending bit, the ring is read when it looks.
                if err.errno in (errno.ENOENT, errno.ECONNREFUSED):
                    return
                raise

    def wait_notification(self, timeout: float) -> bool:
        """Block until the daemon notified us (True) or ``timeout`` passed."""
        ready, _, _ = select.select([self.sock], [], [], max(timeout, 0))
        if not ready:
            return False
        while True:
            try:
                self.sock.recv(64)
                self.notifications += 1
            except BlockingIOError:
                return True

    # -- transport ------------------------------------------------------------------
    def _take_responses(self) -> bool:
        got = False
        while True:
            data = self.ring.read_responses()
            if not data:
                break
            got = True
            self._deliver(data)
        if got:
            self.notify()                 # room in rsp for the daemon
        return got

    def _pump(self, timeout: float) -> bool:
        if self._take_responses():
            return True
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.wait_notification(left):
                return self._take_responses()
            if self._take_responses():
                return True

    def _send(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + self.timeout
        while view:
            n = self.ring.write_requests(view)
            if n:
                view = view[n:]
                self.notify()
                continue
            # Request ring full: keep taking replies so the daemon is never stuck on us.
            if self._take_responses():
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("request ring stayed full")
            self.wait_notification(left)

    # -- ring reconnection (XENSTORE_SERVER_FEATURE_RECONNECTION) -------------------
    def reconnect(self) -> None:
        """Ask for a fresh connection and wait until the daemon has reset the ring."""
        self.ring.connection = XENSTORE_RECONNECT
        self.notify()
        deadline = time.monotonic() + self.timeout
        while self.ring.connection != XENSTORE_CONNECTED:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the daemon did not reset the ring")
            self.wait_notification(left)
        self.decoder = Decoder()
        self.replies.clear()
        self.events.clear()


class SocketClient(XenstoreClient):
    """The daemon's Unix socket: dom0, privileged."""

    def __init__(self, path: str, timeout: float = 5.0):
        super().__init__(timeout)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _pump(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.sock], [], [], max(timeout, 0))
        if not ready:
            return False
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionResetError("xenstored closed the connection")
        self._deliver(data)
        return True
