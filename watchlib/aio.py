"""The asyncio client: the blocking Client's API, as coroutines.

    async with AsyncClient() as c:
        await c.write("/data/x", b"1")
        sub = await c.watch("/data/*", on_event)      # on_event may be async
        await c.sync()

Tasks of an AsyncClient, all on the loop that connected it:

- *reader*: reads packets in daemon order, resolves the futures of requests
  and appends watch events to the delivery FIFO (``DeliveryQueue``); on a
  lost connection it fails the requests in flight with ``Disconnected``,
  reconnects with backoff and starts a *rewatch* task (WATCH again, then a
  ``Resync`` for every subscription).
- *dispatcher*: delivers the FIFO one item at a time: calls the callback and,
  if it returns an awaitable, awaits it before the next item.  So callbacks
  of a client never overlap and see events in daemon order; an exception is
  logged and the subscription lives on.  A callback that wants concurrency
  can start its own task.

Everything else (patterns, queue, coalescing, barrier, replayed transactions)
works as in the blocking client, from the same sans-I/O pieces.
"""
import asyncio
import inspect
import logging
import os

from xenstore_protocol import Decoder, Op, Packet, ProtocolError, XenstoreError, join_fields, split_fields

from . import commands
from .client import BARRIER_PATH, _client_ids
from .connection import Disconnected, error_from_reply
from .reconnect import Backoff
from .subscription import DEFAULT_MAX_PENDING, DeliveryQueue, Event, Subscription
from .watches import WatchRegistry

log = logging.getLogger("watchlib")


async def adrive(gen, request):
    """Run a sans-I/O command with an async ``request(op, payload)``."""
    try:
        req = next(gen)
        while True:
            try:
                reply = await request(*req)
            except XenstoreError as e:
                req = gen.throw(e)
            else:
                req = gen.send(reply)
    except StopIteration as stop:
        return stop.value


def _retrieve(fut):
    if not fut.cancelled():
        fut.exception()


class _AOps:
    async def read(self, path) -> bytes:
        return await self._run(commands.read(path))

    async def write(self, path, value) -> None:
        await self._run(commands.write(path, value))

    async def mkdir(self, path) -> None:
        await self._run(commands.mkdir(path))

    async def rm(self, path) -> None:
        await self._run(commands.rm(path))

    async def ls(self, path) -> list:
        return await self._run(commands.ls(path))

    async def exists(self, path) -> bool:
        return await self._run(commands.exists(path))

    async def get_perms(self, path) -> list:
        return await self._run(commands.get_perms(path))

    async def set_perms(self, path, perms) -> None:
        await self._run(commands.set_perms(path, perms))


class AsyncTransaction(commands.TransactionState, _AOps):
    """``async with c.transaction() as t``: as ``watchlib.Transaction`` (replay on EAGAIN)."""

    async def __aenter__(self):
        await self._begin()
        return self

    async def __aexit__(self, exc_type, exc, tb):
        if exc_type is not None:
            await self._end(False)
            return False
        await self.commit()
        return False

    async def _begin(self):
        c = self._client
        gen = c._gen
        reply = await c._request(Op.TRANSACTION_START, b"\0", gen=gen)
        self.tx_id = int(reply.rstrip(b"\0"))
        self._gen = gen
        self._log = []

    async def _request(self, op, payload):
        try:
            reply = await self._client._request(op, payload, self.tx_id, gen=self._gen)
        except XenstoreError as e:
            self._log.append((op, payload, None, e.name))
            raise
        self._log.append((op, payload, reply, None))
        return reply

    async def _run(self, gen):
        if self.tx_id is None:
            raise RuntimeError("transaction not started (use it as an async context manager)")
        return await adrive(gen, self._request)

    async def _end(self, commit: bool):
        tx_id, self.tx_id = self.tx_id, None
        if tx_id is None:
            return
        try:
            await self._client._request(Op.TRANSACTION_END, b"T\0" if commit else b"F\0",
                                        tx_id, gen=self._gen)
        except (XenstoreError, Disconnected):
            if commit:
                raise

    async def abort(self):
        await self._end(False)

    async def commit(self):
        steps = {"end": self._end, "begin": self._begin, "request": self._request}
        await adrive(commands.commit_replaying(self), lambda step, *args: steps[step](*args))


class AsyncClient(_AOps):
    """asyncio connection to xenstored; ``await connect()`` or ``async with``."""

    def __init__(self, path=None, *, read_only=False, timeout=None, reconnect=True):
        self.socket_path = commands.socket_path(path, read_only)
        self.read_only = read_only
        self.timeout = timeout
        self._reconnect = reconnect
        self._id = next(_client_ids)
        self._registry = WatchRegistry(f"watchlib{os.getpid()}.a{self._id}")
        self._queue = DeliveryQueue()
        self._barriers = {}
        self._pending = {}
        self._req_id = 0
        self._reader = None
        self._writer = None
        self._reader_task = None
        self._dispatch_task = None
        self._wake = None
        self._connected = None
        self._reg_lock = None
        self._closed = False
        self._gen = 0
        self.reconnects = 0
        self._backoff = Backoff()
        self._loop = None

    async def connect(self) -> "AsyncClient":
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._connected = asyncio.Event()
        self._rewatched = asyncio.Event()     # clear from a loss until re-registered
        self._rewatched.set()
        self._reg_lock = asyncio.Lock()
        self._reader, self._writer = await asyncio.open_unix_connection(self.socket_path)
        self._gen = 1
        self._connected.set()
        self._reader_task = asyncio.ensure_future(self._read_loop(self._reader))
        return self

    async def __aenter__(self):
        if self._loop is None:
            await self.connect()
        return self

    async def __aexit__(self, *exc):
        await self.close()

    @property
    def connected(self) -> bool:
        return self._connected is not None and self._connected.is_set()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for fut, _ in self._pending.values():
            if not fut.done():
                fut.set_exception(Disconnected("client closed"))
        self._pending.clear()
        for fut in self._barriers.values():
            if not fut.done():
                fut.set_exception(Disconnected("client closed"))
        self._barriers.clear()
        if self._writer is not None:
            self._writer.close()
        current = asyncio.current_task()
        for task in (self._reader_task, self._dispatch_task):
            if task is not None and task is not current:
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        if self._connected is not None:
            self._connected.set()      # wake waiters, who then see _closed
            self._rewatched.set()

    # -- requests ---------------------------------------------------------------

    async def _send(self, op, payload, tx_id=0, gen=None, hook=None):
        """Send; returns the future of the reply (hook(packet) runs in the reader first)."""
        if not self._connected.is_set():
            try:
                await asyncio.wait_for(self._connected.wait(), self.timeout)
            except asyncio.TimeoutError:
                raise Disconnected(f"not connected to {self.socket_path}") from None
        if self._closed:
            raise Disconnected("client closed")
        if gen is not None and gen != self._gen:
            raise Disconnected("the connection this transaction belonged to was lost")
        self._req_id = (self._req_id % 0xFFFFFFFF) + 1
        fut = self._loop.create_future()
        # Mark a failure as seen even when nobody awaits (fire-and-forget UNWATCH).
        fut.add_done_callback(_retrieve)
        self._pending[self._req_id] = (fut, hook)
        self._writer.write(Packet(op, self._req_id, tx_id, payload).encode())
        return fut

    async def _request(self, op, payload, tx_id=0, gen=None, hook=None):
        fut = await self._send(op, payload, tx_id, gen, hook)
        try:
            await self._writer.drain()
        except (ConnectionError, OSError):
            pass       # the reader notices and fails fut
        if self.timeout is None:
            return await fut
        return await asyncio.wait_for(fut, self.timeout)

    async def _run(self, gen):
        return await adrive(gen, self._request)

    async def request(self, op, payload: bytes, tx_id: int = 0) -> bytes:
        return await self._request(op, payload, tx_id)

    async def get_domain_path(self, domid: int) -> str:
        return await self._run(commands.get_domain_path(domid))

    async def is_domain_introduced(self, domid: int) -> bool:
        return await self._run(commands.is_domain_introduced(domid))

    async def introduce(self, domid: int, mfn: int, port: int) -> None:
        await self._run(commands.introduce(domid, mfn, port))

    async def release(self, domid: int) -> None:
        await self._run(commands.release(domid))

    async def glob(self, pattern: str) -> list:
        """The existing nodes a pattern selects, sorted (see Client.glob)."""
        from .patterns import Pattern
        pat = Pattern(pattern)
        if pat.literal:
            return [pat.text] if pat.special or await self.exists(pat.text) else []
        return await self._run(commands.walk_matches(pat))

    def transaction(self, attempts: int = 5) -> AsyncTransaction:
        return AsyncTransaction(self, attempts)

    async def run_transaction(self, fn, attempts: int = 5):
        """``await fn(t)`` (or ``fn(t)``) in a transaction, re-run on EAGAIN."""
        for attempt in range(attempts):
            t = AsyncTransaction(self, 1, replay=False)
            await t._begin()
            try:
                result = fn(t)
                if inspect.isawaitable(result):
                    result = await result
            except BaseException:
                await t._end(False)
                raise
            try:
                await t._end(True)
                return result
            except XenstoreError as e:
                if e.name != "EAGAIN" or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    # -- subscriptions --------------------------------------------------------------

    async def watch(self, pattern: str, callback, *, with_value=False, initial=True,
                    max_pending=DEFAULT_MAX_PENDING) -> Subscription:
        """As ``Client.watch``; ``callback`` may be a plain function or a coroutine function."""
        if self._closed:
            raise Disconnected("client closed")
        sub = Subscription(self, pattern, callback, with_value=with_value, initial=initial,
                           max_pending=max_pending)
        async with self._reg_lock:
            dw, created = self._registry.add(sub)
            if created:
                try:
                    await self._register(dw)
                except BaseException:
                    sub.active = False
                    self._registry.remove(sub)
                    raise
            self._start_dispatcher()
        if initial:
            pat = sub._pattern
            found = [pat.text] if pat.literal else await self._run(commands.walk_matches(pat))
            if sub.active:
                for path in found:
                    self._queue.push_event(sub, path, initial=True)
                self._wake.set()
        return sub

    async def _register(self, dw):
        dw.swallow = True
        try:
            await self._request(Op.WATCH, join_fields(dw.path.encode(), dw.token.encode()),
                                hook=self._watch_hook(dw))
        except BaseException:
            dw.swallow = False
            raise

    @staticmethod
    def _watch_hook(dw):
        def hook(packet):
            if packet.op == Op.ERROR:
                dw.swallow = False
            else:
                dw.registered = True
        return hook

    def _unsubscribe(self, sub):
        """Called by Subscription.cancel(): synchronous; the UNWATCH goes out in a task."""
        if not sub.active:
            return
        sub.active = False
        self._queue.drop(sub)
        dw = self._registry.remove(sub)
        if dw is not None and dw.registered and not self._closed:
            asyncio.ensure_future(self._unwatch(dw))

    async def _unwatch(self, dw):
        try:
            async with self._reg_lock:
                await self._request(Op.UNWATCH, join_fields(dw.path.encode(), dw.token.encode()))
        except (XenstoreError, Disconnected, asyncio.TimeoutError) as e:
            log.debug("watchlib: UNWATCH %s: %s", dw.path, e)

    async def sync(self, timeout=None) -> None:
        """Barrier, as ``Client.sync``; not from a callback (RuntimeError)."""
        if self._dispatch_task is not None and asyncio.current_task() is self._dispatch_task:
            raise RuntimeError("sync() from a callback would wait for itself")
        await asyncio.wait_for(self._sync(), timeout)

    async def _sync(self):
        while True:
            if not self._rewatched.is_set() and not self._closed:
                await self._rewatched.wait()     # let the Resync items be queued first
            if self._closed:
                raise Disconnected("client closed")
            token = self._registry.new_token()
            fut = self._loop.create_future()
            self._barriers[token] = fut
            self._start_dispatcher()
            payload = join_fields(BARRIER_PATH.encode(), token.encode())
            try:
                await self._request(Op.WATCH, payload)
                await fut
            except Disconnected:
                self._barriers.pop(token, None)
                if self._closed:
                    raise
                continue
            finally:
                self._barriers.pop(token, None)
            try:
                await self._send(Op.UNWATCH, payload)   # reply read and dropped
            except (Disconnected, asyncio.TimeoutError):
                pass
            return

    # -- reader task ----------------------------------------------------------------

    async def _read_loop(self, reader):
        decoder = Decoder()
        while True:
            try:
                data = await reader.read(1 << 16)
            except (ConnectionError, OSError):
                data = b""
            if data:
                try:
                    packets = decoder.feed(data)
                except ProtocolError as e:
                    log.error("watchlib: broken stream from %s (%s)", self.socket_path, e)
                    packets = None
                if packets is not None:
                    for packet in packets:
                        self._handle(packet)
                    continue
            reader = await self._lost()
            if reader is None:
                return
            decoder = Decoder()

    def _handle(self, packet):
        if packet.op == Op.WATCH_EVENT:
            fields = split_fields(packet.payload)
            if len(fields) < 2:
                return
            path, token = fields[0].decode("latin-1"), fields[1].decode("latin-1")
            fut = self._barriers.pop(token, None)
            if fut is not None:
                self._queue.push_barrier(fut)
                self._wake.set()
                return
            routes = self._registry.route(path, token)
            if routes:
                for sub, above in routes:
                    self._queue.push_event(sub, path, False, above)
                self._wake.set()
            return
        fut, hook = self._pending.pop(packet.req_id, (None, None))
        if fut is None or fut.done():
            return
        if hook is not None:
            try:
                hook(packet)
            except Exception:
                log.exception("watchlib: error in a reply hook")
        if packet.op == Op.ERROR:
            fut.set_exception(error_from_reply(packet.payload))
        else:
            fut.set_result(packet.payload)

    async def _lost(self):
        self._connected.clear()
        if self._reconnect:
            self._rewatched.clear()
        self._gen += 1
        failed, self._pending = self._pending, {}
        for fut, _ in failed.values():
            if not fut.done():
                fut.set_exception(Disconnected("connection to xenstored lost"))
        self._registry.disconnected()
        for fut in self._barriers.values():
            if not fut.done():
                fut.set_exception(Disconnected("connection lost"))
        self._barriers.clear()
        self._writer.close()
        if self._closed:
            return None
        log.warning("watchlib: lost the connection to %s", self.socket_path)
        if not self._reconnect:
            self._closed = True
            self._connected.set()
            self._rewatched.set()
            return None
        while not self._closed:
            await asyncio.sleep(self._backoff.next_delay())
            try:
                reader, writer = await asyncio.open_unix_connection(self.socket_path)
            except OSError:
                continue
            self._backoff.reset()
            self._reader, self._writer = reader, writer
            self.reconnects += 1
            self._connected.set()
            log.warning("watchlib: reconnected to %s", self.socket_path)
            asyncio.ensure_future(self._rewatch())
            return reader
        return None

    async def _rewatch(self):
        async with self._reg_lock:
            watches = [dw for dw in self._registry.watches() if not dw.registered]
            sent = []
            try:
                for dw in watches:
                    dw.swallow = True
                    payload = join_fields(dw.path.encode(), dw.token.encode())
                    sent.append((dw, await self._send(Op.WATCH, payload,
                                                      hook=self._rewatch_hook(dw))))
            except Disconnected:
                return
            for dw, fut in sent:
                try:
                    await fut
                except Disconnected:
                    return
                except XenstoreError as e:
                    log.error("watchlib: could not re-register the watch on %s: %s", dw.path, e)
            self._rewatched.set()

    def _rewatch_hook(self, dw):
        # Run by the reader as the OK arrives: the Resync is queued exactly
        # where the watch became active again in the event stream.
        def hook(packet):
            if packet.op == Op.ERROR:
                dw.swallow = False
                return
            dw.registered = True
            for sub in list(dw.subs.values()):
                self._queue.push_resync(sub)
            self._wake.set()
        return hook

    # -- dispatcher task --------------------------------------------------------------

    def _start_dispatcher(self):
        if self._dispatch_task is None:
            self._dispatch_task = asyncio.ensure_future(self._dispatch_loop())

    async def _dispatch_loop(self):
        queue = self._queue
        while not self._closed:
            entry = queue.pop()
            if entry is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            sub, item = entry
            if sub is None:
                if not item.done():
                    item.set_result(None)
                continue
            if isinstance(item, Event) and sub.with_value and not item.path.startswith("@"):
                try:
                    item.value = await self._run(commands.read(item.path))
                except (XenstoreError, Disconnected, asyncio.TimeoutError):
                    item.value = None
            if not sub.active:
                continue
            sub.delivered += 1
            try:
                result = sub.callback(item)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("watchlib: callback for %s raised on %r", sub.pattern, item)
