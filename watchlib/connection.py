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

What is not I/O (request ids, reply matching, routing, re-watch) is in
``protocol.ProtocolCore``, shared with the asyncio client.
"""
import logging
import socket
import threading

from xenstore_protocol import ProtocolError

from .protocol import Disconnected, ProtocolCore, error_from_reply  # noqa: F401 (re-exported)
from .reconnect import Backoff

log = logging.getLogger("watchlib")


class Pending:
    """One request in flight (or one sync barrier): the waiter of the threaded shell."""
    __slots__ = ("done", "reply", "error", "hook", "req_id")

    def __init__(self, hook=None):
        self.done = threading.Event()
        self.reply = None
        self.error = None
        self.hook = hook
        self.req_id = None

    def complete(self, reply, error) -> None:
        self.reply = reply
        self.error = error
        self.done.set()


def _connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return sock


def _call_hook(hook, name: str) -> None:
    """Run the owner's ``on_lost`` / ``on_restored`` (if any) on the reader thread; an
    exception is logged, and reading goes on."""
    if hook is None:
        return
    try:
        hook()
    except Exception:
        log.exception("watchlib: error in %s", name)


class Connection:
    """The threaded shell around a ``ProtocolCore``: a socket, a reader thread, one lock.

    ``cv`` (a Condition on that lock) guards the core; a client that keeps
    state of its own in the core (subscriptions) takes the same ``cv`` and is
    woken through it when the reader queues events for its dispatcher.
    """

    def __init__(self, path: str, *, on_event=None, on_lost=None, on_restored=None,
                 reconnect=True, backoff=None, name="watchlib", core=None):
        self.path = path
        self.core = core if core is not None else ProtocolCore()
        self._on_event = on_event
        self._on_lost = on_lost
        self._on_restored = on_restored
        self._reconnect = reconnect
        self._backoff = backoff or Backoff()
        self._sock = _connect(path)          # the first connection must succeed
        self.cv = threading.Condition(threading.Lock())
        self._send_lock = threading.Lock()
        self._connected = True
        self._closed = False
        self._closing = threading.Event()
        self.reconnects = 0
        self._reader = threading.Thread(target=self._read_loop, name=f"{name}-reader",
                                        daemon=True)
        self._reader.start()

    @property
    def generation(self) -> int:
        return self.core.generation

    # -- requests ------------------------------------------------------------

    def send(self, op: int, payload: bytes, tx_id: int = 0, *, gen=None, timeout=None,
             hook=None) -> Pending:
        """Send one request; returns its Pending (see ``wait``)."""
        pending = Pending(hook)
        with self.cv:
            if not self._connected and not self._closed:
                if not self.cv.wait_for(lambda: self._connected or self._closed, timeout):
                    raise Disconnected(f"not connected to {self.path}")
            if self._closed:
                raise Disconnected("client closed")
            pending.req_id, data = self.core.send(op, payload, tx_id, pending, hook, gen)
            sock = self._sock
        try:
            with self._send_lock:
                sock.sendall(data)
        except OSError as e:
            with self.cv:
                self.core.forget(pending.req_id)
            raise Disconnected(f"send failed: {e}") from None
        return pending

    def wait(self, pending: Pending, timeout=None) -> bytes:
        if not pending.done.wait(timeout):
            with self.cv:
                self.core.forget(pending.req_id)
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
        with self.cv:
            if self._closed:
                return
            self._closed = True
            self._connected = False
            failed = self.core.close()
            self.cv.notify_all()
            sock = self._sock
        self._closing.set()
        for waiter in failed:
            waiter.complete(None, Disconnected("client closed"))
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
                with self.cv:
                    try:
                        fed = self.core.feed(data)
                    except ProtocolError as e:
                        log.error("watchlib: broken stream from %s (%s); reconnecting",
                                  self.path, e)
                        fed = None
                    if fed is not None and fed.woke:
                        self.cv.notify_all()
                if fed is not None:
                    for waiter, reply, error in fed.replies:
                        waiter.complete(reply, error)
                    if self._on_event is not None:
                        for path, token in fed.events:
                            try:
                                self._on_event(path, token)
                            except Exception:
                                log.exception("watchlib: error while routing a watch event")
                    continue
            if not self._lost(sock):
                return

    def _lost(self, sock) -> bool:
        """The socket closed: fail what is in flight, reconnect.  False: stop reading."""
        with self.cv:
            self._connected = False
            closed = self._closed
            # Before failing the requests: a caller that retries must find the
            # client already in its "lost" state.
            failed = self.core.lost(rewatch=self._reconnect and not closed)
            self.cv.notify_all()
        sock.close()
        if not closed:
            log.warning("watchlib: lost the connection to %s", self.path)
            _call_hook(self._on_lost, "on_lost")
        for waiter in failed:
            waiter.complete(None, Disconnected("connection to xenstored lost"))
        if closed:
            return False
        if not self._reconnect:
            with self.cv:
                self._closed = True
                self.cv.notify_all()
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
        with self.cv:
            if self._closed:
                new.close()
                return False
            self._sock = new
            self._connected = True
            self.reconnects += 1
            self.cv.notify_all()
        log.warning("watchlib: reconnected to %s", self.path)
        _call_hook(self._on_restored, "on_restored")
        return True
