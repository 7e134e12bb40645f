"""The asyncio client: the blocking Client's API, as coroutines.

    async with AsyncClient() as c:
        await c.write("/data/x", b"1")
        sub = await c.watch("/data/*", on_event)      # on_event may be async
        await c.sync()

Tasks of an AsyncClient, all on the loop that connected it:

- *reader*: reads bytes and feeds them to the protocol core
  (``protocol.ProtocolCore``, shared with the blocking client), which
  matches replies to requests and routes watch events into the delivery FIFO;
  the reader resolves the futures.  On a lost connection it fails the
  requests in flight with ``Disconnected``, reconnects with backoff and starts
  a *rewatch* task (WATCH again, then a ``Resync`` for every subscription).
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

from xenstore_protocol import Op, ProtocolError, XenstoreError

from . import commands
from .client import ClientBase
from .commands import adrive  # noqa: F401  (re-exported)
from .protocol import Disconnected
from .reconnect import Backoff
from .subscription import DEFAULT_MAX_PENDING, Subscription

log = logging.getLogger("watchlib")


def _retrieve(fut):
    if not fut.cancelled():
        fut.exception()


class _Waiter:
    """A future as the core's waiter: ``complete`` resolves it (once)."""
    __slots__ = ("fut",)

    def __init__(self, loop):
        self.fut = loop.create_future()
        # Mark a failure as seen even when nobody awaits (fire-and-forget UNWATCH).
        self.fut.add_done_callback(_retrieve)

    def complete(self, reply, error):
        if not self.fut.done():
            if error is not None:
                self.fut.set_exception(error)
            else:
                self.fut.set_result(reply)


class _AOps:
    """read/write/... for AsyncClient and AsyncTransaction, through ``self._run``.

    ``tx``: run the request in that transaction instead (``await c.read(path, tx=t)``).
    """

    async def read(self, path, tx=None) -> bytes:
        return await (tx or self)._run(commands.read(path))

    async def write(self, path, value, tx=None) -> None:
        await (tx or self)._run(commands.write(path, value))

    async def mkdir(self, path, tx=None) -> None:
        await (tx or self)._run(commands.mkdir(path))

    async def rm(self, path, tx=None) -> None:
        await (tx or self)._run(commands.rm(path))

    async def ls(self, path, tx=None) -> list:
        return await (tx or self)._run(commands.ls(path))

    async def exists(self, path, tx=None) -> bool:
        return await (tx or self)._run(commands.exists(path))

    async def get_perms(self, path, tx=None) -> list:
        return await (tx or self)._run(commands.get_perms(path))

    async def set_perms(self, path, perms, tx=None) -> None:
        await (tx or self)._run(commands.set_perms(path, perms))


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
        await adrive(commands.transaction_begin(self, self._client._core.generation),
                     self._client._request)

    async def _run(self, gen):
        return await adrive(commands.in_transaction(self, gen), self._client._request)

    async def _end(self, commit: bool):
        await adrive(commands.transaction_finish(self, commit), self._client._request)

    async def abort(self):
        await self._end(False)

    async def commit(self):
        await adrive(commands.commit_replaying(self, self._client._core), self._client._request)


class AsyncClient(_AOps, ClientBase):
    """asyncio connection to xenstored; ``await connect()`` or ``async with``."""

    def __init__(self, path=None, *, read_only=False, timeout=None, reconnect=True):
        self._setup(path, read_only, timeout, token_tag="a")
        self._reconnect = reconnect
        self._reader = None
        self._writer = None
        self._reader_task = None
        self._dispatch_task = None
        self._wake = None
        self._connected = None
        self._reg_lock = None
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
        for waiter in self._core.close():
            waiter.complete(None, Disconnected("client closed"))
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
        waiter = _Waiter(self._loop)
        _, data = self._core.send(op, payload, tx_id, waiter, hook, gen)
        self._writer.write(data)
        return waiter.fut

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
        return await self._run(commands.glob(pattern))

    def transaction(self, attempts: int = 5) -> AsyncTransaction:
        return AsyncTransaction(self, attempts)

    async def run_transaction(self, fn, attempts: int = 5):
        """``await fn(t)`` (or ``fn(t)``) in a transaction, re-run on EAGAIN."""
        async def step(*req):
            if req[0] is not commands.CALL:
                return await self._request(*req)
            result = fn(req[1])
            return (await result) if inspect.isawaitable(result) else result
        return await adrive(commands.run_transaction(
            lambda: AsyncTransaction(self, 1, replay=False), self._core, attempts), step)

    # -- subscriptions --------------------------------------------------------------

    async def watch(self, pattern: str, callback, *, with_value=False, initial=True,
                    max_pending=DEFAULT_MAX_PENDING) -> Subscription:
        """As ``Client.watch``; ``callback`` may be a plain function or a coroutine function."""
        if self._closed:
            raise Disconnected("client closed")
        sub = Subscription(self, pattern, callback, with_value=with_value, initial=initial,
                           max_pending=max_pending)
        async with self._reg_lock:
            dw = self._core.subscribe(sub)
            if dw is not None:
                op, payload, hook = self._core.watch_request(dw)
                try:
                    await self._request(op, payload, hook=hook)
                except BaseException:
                    self._core.watch_failed(dw, sub)
                    raise
            self._start_dispatcher()
        if initial:
            found = await self._run(commands.initial_paths(sub._pattern))
            if self._core.push_initial(sub, found):
                self._wake.set()
        return sub

    def _unsubscribe(self, sub):
        """Called by Subscription.cancel(): synchronous; the UNWATCH goes out in a task."""
        payload = self._core.unsubscribe(sub)
        if payload is not None and not self._closed:
            asyncio.ensure_future(self._unwatch(sub, payload))

    async def _unwatch(self, sub, payload):
        try:
            async with self._reg_lock:
                await self._request(Op.UNWATCH, payload)
        except (XenstoreError, Disconnected, asyncio.TimeoutError) as e:
            log.debug("watchlib: UNWATCH %s: %s", sub.pattern, e)

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
            waiter = _Waiter(self._loop)
            payload = self._core.add_barrier(waiter)
            self._start_dispatcher()
            try:
                await self._request(Op.WATCH, payload)
                await waiter.fut
            except Disconnected:
                if self._closed:
                    raise
                continue
            finally:
                self._core.drop_barrier(payload)
            try:
                await self._send(Op.UNWATCH, payload)   # reply read and dropped
            except (Disconnected, asyncio.TimeoutError):
                pass
            return

    # -- reader task ----------------------------------------------------------------

    async def _read_loop(self, reader):
        while True:
            try:
                data = await reader.read(1 << 16)
            except (ConnectionError, OSError):
                data = b""
            if data:
                try:
                    fed = self._core.feed(data)
                except ProtocolError as e:
                    log.error("watchlib: broken stream from %s (%s)", self.socket_path, e)
                    fed = None
                if fed is not None:
                    for waiter, reply, error in fed.replies:
                        waiter.complete(reply, error)
                    if fed.woke:
                        self._wake.set()
                    continue
            reader = await self._lost()
            if reader is None:
                return

    async def _lost(self):
        self._connected.clear()
        if self._reconnect:
            self._rewatched.clear()
        for waiter in self._core.lost(rewatch=self._reconnect):
            waiter.complete(None, Disconnected("connection to xenstored lost"))
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
            requests = self._core.rewatch_requests()
            sent = []
            try:
                for dw, op, payload, hook in requests:
                    sent.append((dw, await self._send(op, payload, hook=hook)))
            except Disconnected:
                return
            for dw, fut in sent:
                try:
                    await fut
                except Disconnected:
                    return
                except XenstoreError as e:
                    log.error("watchlib: could not re-register the watch on %s: %s", dw.path, e)
            self._core.rewatch_pending = False
            self._rewatched.set()

    # -- dispatcher task --------------------------------------------------------------

    def _start_dispatcher(self):
        if self._dispatch_task is None:
            self._dispatch_task = asyncio.ensure_future(self._dispatch_loop())

    async def _dispatch_loop(self):
        queue = self._core.queue
        while not self._closed:
            entry = queue.pop()
            if entry is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            sub, item = entry
            if sub is None:
                item.complete(None, None)
                continue
            if self._core.wants_value(sub, item):
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
