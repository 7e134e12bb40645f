"""A blocking connection to xenstored: one socket, one reader thread, reconnection.

Any thread may send a request; replies are matched to requests by ``req_id``
(the daemon echoes it), so requests from several threads can be in flight at
once.  The reader thread is the only one that reads the socket.  For each
packet, in the order the daemon sent them, it either completes the waiting
request (after running the request's ``hook``, still on the reader thread,
so that a hook is ordered with the watch events around it) or passes a
WATCH_EVENT to ``on_event(path, token)``.

When the socket closes, every request in flight fails with ``Disconnected``
(it may or may not have been applied), ``on_lost()`` runs, and the reader
reconnects with backoff (``reconnect.Backoff``); then ``on_restored()`` runs
and requests flow again.  Requests made while disconnected wait for the
connection, up to their timeout.  ``generation`` counts connections: a
transaction id is only valid in the generation that opened it.
"""
import itertools
import logging
import socket
import threading

from xenstore_protocol import (
    ERROR_NAMES, Decoder, Op, Packet, ProtocolError, XenstoreError, split_fields,
)

from .reconnect import Backoff

log = logging.getLogger("watchlib")


class Disconnected(ConnectionError):
    """The connection to the daemon was lost (or closed) before a reply came.

    The request may or may not have been applied.
    """


def error_from_reply(payload: bytes) -> XenstoreError:
    name = payload.split(b"\0", 1)[0].decode("ascii", "replace")
    if name not in ERROR_NAMES:
        return XenstoreError("EIO", f"daemon sent unknown error {name!r}")
    return XenstoreError(name)


class Pending:
    """One request in flight."""
    __slots__ = ("done", "reply", "error", "hook")

    def __init__(self, hook=None):
        self.done = threading.Event()
        self.reply = None
        self.error = None
        self.hook = hook


def _connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return sock


class Connection:
    def __init__(self, path: str, *, on_event, on_lost=None, on_restored=None,
                 reconnect=True, backoff=None, name="watchlib"):
        self.path = path
        self._on_event = on_event
        self._on_lost = on_lost
        self._on_restored = on_restored
        self._reconnect = reconnect
        self._backoff = backoff or Backoff()
        self._sock = _connect(path)          # the first connection must succeed
        self._decoder = Decoder()
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._send_lock = threading.Lock()
        self._pending = {}
        self._req_ids = itertools.count(1)
        self._connected = True
        self._closed = False
        self._closing = threading.Event()
        self.generation = 1
        self.reconnects = 0
        self._reader = threading.Thread(target=self._read_loop, name=f"{name}-reader",
                                        daemon=True)
        self._reader.start()

    # -- requests ------------------------------------------------------------

    def send(self, op: int, payload: bytes, tx_id: int = 0, *, gen=None, timeout=None,
             hook=None) -> Pending:
        """Send one request; returns its Pending (see ``wait``)."""
        with self._lock:
            if not self._connected and not self._closed:
                if not self._cv.wait_for(lambda: self._connected or self._closed, timeout):
                    raise Disconnected(f"not connected to {self.path}")
            if self._closed:
                raise Disconnected("client closed")
            if gen is not None and gen != self.generation:
                raise Disconnected("the connection this transaction belonged to was lost")
            req_id = next(self._req_ids) & 0xFFFFFFFF or next(self._req_ids)
            pending = Pending(hook)
            self._pending[req_id] = pending
            sock = self._sock
        data = Packet(op, req_id, tx_id, payload).encode()
        try:
            with self._send_lock:
                sock.sendall(data)
        except OSError as e:
            with self._lock:
                self._pending.pop(req_id, None)
            raise Disconnected(f"send failed: {e}") from None
        return pending

    def wait(self, pending: Pending, timeout=None) -> bytes:
        if not pending.done.wait(timeout):
            with self._lock:
                for req_id, p in list(self._pending.items()):
                    if p is pending:
                        del self._pending[req_id]
            raise TimeoutError("no reply from xenstored")
        if pending.error is not None:
            raise pending.error
        return pending.reply

    def request(self, op: int, payload: bytes, tx_id: int = 0, *, gen=None, timeout=None,
                hook=None) -> bytes:
        """Send and wait: the reply payload, or raise XenstoreError / Disconnected / TimeoutError."""
        return self.wait(self.send(op, payload, tx_id, gen=gen, timeout=timeout, hook=hook),
                         timeout)

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def closed(self) -> bool:
        """Closed by close(), or lost with reconnection disabled."""
        return self._closed

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._connected = False
            self._cv.notify_all()
            failed, self._pending = self._pending, {}
            sock = self._sock
        self._closing.set()
        for p in failed.values():
            p.error = Disconnected("client closed")
            p.done.set()
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
        if threading.current_thread() is not self._reader:
            self._reader.join(5)

    # -- reader thread ---------------------------------------------------------

    def _read_loop(self):
        while True:
            sock = self._sock
            try:
                data = sock.recv(1 << 16)
            except OSError:
                data = b""
            if data:
                try:
                    packets = self._decoder.feed(data)
                except ProtocolError as e:
                    log.error("watchlib: broken stream from %s (%s); reconnecting", self.path, e)
                    packets = None
                if packets is not None:
                    for packet in packets:
                        self._handle(packet)
                    continue
            if not self._lost(sock):
                return

    def _handle(self, packet: Packet):
        if packet.op == Op.WATCH_EVENT:
            fields = split_fields(packet.payload)
            if len(fields) >= 2:
                try:
                    self._on_event(fields[0].decode("latin-1"), fields[1].decode("latin-1"))
                except Exception:
                    log.exception("watchlib: error while routing a watch event")
            return
        with self._lock:
            pending = self._pending.pop(packet.req_id, None)
        if pending is None:
            return          # timed out, or fire-and-forget
        if packet.op == Op.ERROR:
            pending.error = error_from_reply(packet.payload)
        else:
            pending.reply = packet.payload
        if pending.hook is not None:
            try:
                pending.hook(packet)
            except Exception:
                log.exception("watchlib: error in a reply hook")
        pending.done.set()

    def _lost(self, sock) -> bool:
        """The socket closed: fail what is in flight, reconnect.  False: stop reading."""
        with self._lock:
            self._connected = False
            self.generation += 1
            failed, self._pending = self._pending, {}
            closed = self._closed
        sock.close()
        if not closed:
            log.warning("watchlib: lost the connection to %s", self.path)
            # Before failing the requests: a caller that retries must find the
            # client already in its "lost" state.
            if self._on_lost is not None:
                try:
                    self._on_lost()
                except Exception:
                    log.exception("watchlib: error in on_lost")
        for p in failed.values():
            p.error = Disconnected("connection to xenstored lost")
            p.done.set()
        if closed:
            return False
        if not self._reconnect:
            with self._lock:
                self._closed = True
                self._cv.notify_all()
            return False
        while True:
            if self._closing.wait(self._backoff.next_delay()):
                return False
            try:
                new = _connect(self.path)
            except OSError:
                continue
            break
        self._backoff.reset()
        with self._lock:
            if self._closed:
                new.close()
                return False
            self._sock = new
            self._decoder = Decoder()
            self._connected = True
            self.reconnects += 1
            self._cv.notify_all()
        log.warning("watchlib: reconnected to %s", self.path)
        if self._on_restored is not None:
            try:
                self._on_restored()
            except Exception:
                log.exception("watchlib: error in on_restored")
        return True
