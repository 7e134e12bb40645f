"""One host's bridge: its xenstore mirror into a JetStream KV bucket, its domains onto a stream.

Order of events inside (one asyncio loop; the domain watcher is watchlib's
thread and hands its callbacks over with call_soon_threadsafe):

- ``AsyncMirror`` calls ``_on_change`` once per real change; the change goes
  into ``pending`` (key -> latest value, None for a delete), at most
  ``queue_max`` keys.  One more key, or a failure to reach the broker, and
  the bridge stops holding changes: ``pending`` is dropped and a *reconcile*
  is due (counted in ``overflows``/``dropped``, said once in the log).
- The publisher task empties ``pending`` into the bucket, and before that,
  when one is due, reconciles: it lists the host's keys in the bucket and
  makes them equal to the mirror (writes missing or stale keys, deletes
  keys whose node is gone).  A reconcile is due at start, after NATS
  reconnects, after the mirror re-read the store for a Resync (xenstore
  reconnect) or LostEvents, and after an overflow.
- Domain life-cycle events (``watchlib.domains``) are published to
  ``xsd.<host>.domain.<domid>.added|removed|changed`` with a ``Nats-Msg-Id``
  of ``<host>.<domid>.<n>``, n counting that domain id's events on this
  host.  What was published, and n, are kept in the bucket under
  ``<host>.=domains``; a restarted bridge reloads them, so it announces only
  what changed while it was away, and an event it had published just before
  dying gets the same id again and is dropped by JetStream's duplicate window.
- ``<host>.=heartbeat`` is written every ``heartbeat`` seconds with the
  bridge's clock and counters: a consumer ages it (``FleetMirror.age``).
"""
import asyncio
import collections
import json
import logging
import time

from watchlib import AsyncClient, Client
from watchlib.domains import domains as watch_domains
from watchlib.fleet import DEFAULT_BUCKET, DOMAINS, HEARTBEAT, ensure_bucket, escape_token, key_of, meta_key, path_of_key
from watchlib.mirror import AsyncMirror, Removed
from watchlib.reconnect import Backoff

log = logging.getLogger("xsd_fleet")

DEFAULT_PATTERNS = (
    "/local/domain/*/name",                      # domain names
    "/local/domain/*/device/*/*/state",          # every frontend's state (xenbus states)
    "/local/domain/*/backend/*/*/*/state",       # every backend's state
    "/vm/**",                                    # the toolstack's VM records
)
DEFAULT_STREAM = "XSD_EVENTS"
DUPLICATE_WINDOW = 3600.0        # seconds JetStream remembers a Nats-Msg-Id
NATS_ERRORS = (ConnectionError, OSError, asyncio.TimeoutError, TimeoutError)


def _nats_errors():
    import nats.errors
    import nats.js.errors
    return NATS_ERRORS + (nats.errors.Error, nats.js.errors.Error)


def _why(e, timeout) -> str:
    if isinstance(e, (asyncio.TimeoutError, TimeoutError)) and not str(e):
        return f"no answer within {timeout:g} s"
    return str(e) or type(e).__name__


class StartError(Exception):
    """The bridge cannot start: the broker or xenstored cannot be reached (one line)."""


class Bridge:
    def __init__(self, host: str, *, servers, xenstored_path=None, patterns=DEFAULT_PATTERNS,
                 bucket=DEFAULT_BUCKET, stream=DEFAULT_STREAM, queue_max=10000, heartbeat=5.0,
                 hypervisor=None, domains=True, publish_timeout=2.0, connect_timeout=30.0):
        self.host = host
        self.host_token = escape_token(host)
        self.servers = servers
        self.xenstored_path = xenstored_path
        self.patterns = list(patterns)
        self.bucket = bucket
        self.stream = stream
        self.queue_max = queue_max
        self.heartbeat = heartbeat
        self.hypervisor = hypervisor
        self.with_domains = domains
        self.publish_timeout = publish_timeout
        self.connect_timeout = connect_timeout
        self.counters = collections.Counter()
        self.pending = {}                # bucket key -> value (None: delete), newest last
        self._reconcile_due = True
        self._mirror_gaps = 0            # mirror.resyncs + mirror.lost already reconciled
        self._dom_events = collections.deque()
        self._dom_current = {}           # domid -> DomainInfo, as the watcher last said
        self._dom_ready = False          # the watcher's first scan is in
        self._dom_published = {}         # domid -> DomainInfo as announced
        self._dom_seq = {}               # domid -> events published for it
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._tasks = []
        self._closed = False
        self._nc = self._js = self._kv = self._xs = self.mirror = None
        self._xs_blocking = self._domain_watcher = None

    @property
    def stats(self) -> dict:
        """The counters, and what is held now (also in every heartbeat)."""
        return {**self.counters, "pending": len(self.pending), "reconcile_due": self._reconcile_due}

    # -- life-cycle -------------------------------------------------------------------

    async def start(self) -> "Bridge":
        import nats
        self._loop = asyncio.get_running_loop()
        try:
            self._nc = await asyncio.wait_for(nats.connect(
                self.servers, max_reconnect_attempts=-1, reconnect_time_wait=0.2,
                reconnected_cb=self._on_nats_reconnected,
                disconnected_cb=self._on_nats_disconnected, error_cb=self._on_nats_error,
                name=f"xsd-fleet {self.host}"), self.connect_timeout)
            self._js = self._nc.jetstream(timeout=self.publish_timeout)
            self._kv = await ensure_bucket(self._js, self.bucket)
            await self._ensure_stream()
            await self._load_domains()
        except Exception as e:
            raise StartError(f"cannot use NATS JetStream at {','.join(self.servers)}: "
                             f"{_why(e, self.connect_timeout)}") from e
        try:
            self._xs = await asyncio.wait_for(
                AsyncClient(self.xenstored_path, timeout=10).connect(), self.connect_timeout)
        except Exception as e:
            raise StartError(f"cannot connect to xenstored: {_why(e, self.connect_timeout)}") from e
        self.mirror = await AsyncMirror.start(self.patterns, self._on_change, client=self._xs,
                                              max_pending=self.queue_max)
        if self.with_domains:
            await asyncio.to_thread(self._start_domains)
        self._tasks = [asyncio.ensure_future(self._publisher()),
                       asyncio.ensure_future(self._heartbeats())]
        self._wake.set()
        return self

    async def _ensure_stream(self):
        from nats.js.errors import NotFoundError
        try:
            await self._js.stream_info(self.stream)
        except NotFoundError:
            await self._js.add_stream(name=self.stream, subjects=["xsd.*.domain.>"],
                                      duplicate_window=DUPLICATE_WINDOW)

    def _start_domains(self):
        self._xs_blocking = Client(self.xenstored_path, timeout=10)

        def hand_over(kind):
            def callback(info, previous=None):
                self._loop.call_soon_threadsafe(self._on_domain, kind, info)
            return callback

        self._domain_watcher = watch_domains(hand_over("added"), hand_over("removed"),
                                             hand_over("changed"), hypervisor=self.hypervisor,
                                             client=self._xs_blocking)
        self._domain_watcher.sync(10)
        self._loop.call_soon_threadsafe(self._domains_ready)

    def _domains_ready(self):
        self._dom_ready = True
        self._wake.set()

    async def close(self):
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        if self._domain_watcher is not None:
            await asyncio.to_thread(self._domain_watcher.close)
            self._xs_blocking.close()
        if self.mirror is not None:
            self.mirror.close()
        if self._xs is not None:
            await self._xs.close()
        if self._nc is not None:
            await self._nc.close()

    async def sync(self, timeout=30.0):
        """Barrier: every change made on this host before the call is in the bucket
        and every domain event on the stream (or a reconcile did it)."""
        deadline = time.monotonic() + timeout
        await self.mirror.sync(timeout)
        if self._domain_watcher is not None:
            await asyncio.to_thread(self._domain_watcher.sync, timeout)
        self._check_mirror_gaps()
        while True:
            self._idle.clear()
            self._wake.set()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("bridge sync: the broker did not take the changes in time")
            await asyncio.wait_for(self._idle.wait(), left)
            if self._is_idle():
                return

    def _is_idle(self):
        return (not self.pending and not self._reconcile_due and not self._dom_events
                and (self._dom_ready or not self.with_domains))

    # -- callbacks ----------------------------------------------------------------------

    def _on_change(self, change):
        self.counters["changes"] += 1
        if self._reconcile_due:
            self.counters["deferred"] += 1       # the reconcile that is due will write it
            return
        key = key_of(self.host, change.path)
        if key not in self.pending and len(self.pending) >= self.queue_max:
            self.counters["overflows"] += 1
            self.counters["deferred"] += len(self.pending) + 1
            log.warning("xsd-fleet %s: %d changes waiting for the broker, the bound; "
                        "dropping them and reconciling when it takes changes again",
                        self.host, len(self.pending))
            self.pending.clear()
            self._reconcile_due = True
        else:
            self.pending.pop(key, None)              # keep "newest last"
            self.pending[key] = None if isinstance(change, Removed) else change.value
        self._wake.set()

    def _on_domain(self, kind, info):
        if kind == "removed":
            self._dom_current.pop(info.domid, None)
        else:
            self._dom_current[info.domid] = info
        if len(self._dom_events) >= self.queue_max:
            self.counters["overflows"] += 1
            self._dom_events.clear()                 # the state diff below covers them
        else:
            self._dom_events.append((kind, info))
        self._wake.set()

    async def _on_nats_reconnected(self):
        await self._nats_event("reconnected")

    async def _on_nats_disconnected(self):
        await self._nats_event("disconnected")

    async def _nats_event(self, what):
        log.info("xsd-fleet %s: NATS %s", self.host, what)
        self.counters[f"nats_{what}"] += 1
        if what == "reconnected":
            self._reconcile_due = True
            self.pending.clear()
            self._wake.set()

    async def _on_nats_error(self, e):
        log.debug("xsd-fleet %s: NATS: %s", self.host, e)

    def _check_mirror_gaps(self):
        gaps = self.mirror.resyncs + self.mirror.lost
        if gaps != self._mirror_gaps:
            self._mirror_gaps = gaps
            self._reconcile_due = True
            self.pending.clear()
            self._wake.set()

    # -- the publisher ----------------------------------------------------------------------

    async def _publisher(self):
        errors = _nats_errors()
        retry = Backoff()                # as watchlib's clients wait for xenstored
        refused = False                  # the broker refused the last attempt
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            try:
                self._check_mirror_gaps()
                if self._reconcile_due:
                    await self._reconcile()
                while self.pending:
                    key, value = next(iter(self.pending.items()))
                    if value is None:
                        await self._kv.delete(key)
                        self.counters["deleted"] += 1
                    else:
                        await self._kv.put(key, value)
                        self.counters["put"] += 1
                    if key in self.pending and self.pending[key] is value:
                        del self.pending[key]
                await self._publish_domains()
                if refused:
                    log.warning("xsd-fleet %s: the broker takes changes again", self.host)
                    refused = False
                retry.reset()
            except errors as e:
                self.counters["publish_errors"] += 1
                if not refused:           # once per outage, not once per retry
                    refused = True
                    log.warning("xsd-fleet %s: broker refused or unreachable (%s: %s); holding up "
                                "to %d changes, retrying", self.host, type(e).__name__, e,
                                self.queue_max)
                await asyncio.sleep(retry.next_delay())
                self._wake.set()
                continue
            if self._is_idle():
                self._idle.set()

    async def _reconcile(self):
        """Make the host's keys in the bucket equal the mirror."""
        self._reconcile_due = False
        self.pending.clear()
        want = {key_of(self.host, path): value for path, value in self.mirror.values.items()}
        try:
            have = await self._host_keys()
            for key, value in want.items():
                if have.get(key) != value:
                    await self._kv.put(key, value)
                    self.counters["put"] += 1
            for key in have.keys() - want.keys():
                await self._kv.delete(key)
                self.counters["deleted"] += 1
        except BaseException:
            self._reconcile_due = True
            raise
        self.counters["reconciles"] += 1
        log.info("xsd-fleet %s: reconciled %d keys (%d in the bucket before)",
                 self.host, len(want), len(have))

    async def _host_keys(self) -> dict:
        """Every node key of this host in the bucket, with its value."""
        watcher = await self._kv.watch(f"{self.host_token}.>", ignore_deletes=True)
        found = {}
        try:
            while True:
                entry = await watcher.updates(timeout=self.publish_timeout)
                if entry is None:
                    break
                if path_of_key(entry.key)[1] is not None:
                    found[entry.key] = entry.value
                if entry.delta == 0:
                    break
        finally:
            await watcher.stop()
        return found

    # -- domains ------------------------------------------------------------------------------

    async def _load_domains(self):
        from nats.js.errors import KeyNotFoundError
        from watchlib.hypervisor import DomainInfo
        try:
            entry = await self._kv.get(meta_key(self.host, DOMAINS))
        except KeyNotFoundError:
            return
        if not entry.value:
            return
        table = json.loads(entry.value)
        self._dom_published = {int(d): DomainInfo(**info) for d, info in table["domains"].items()}
        self._dom_seq = {int(d): n for d, n in table["seq"].items()}

    async def _publish_domains(self):
        while self._dom_events:
            kind, info = self._dom_events[0]
            was = self._dom_published.get(info.domid)
            if kind == "removed":
                if was is not None:
                    await self._announce("removed", was, None)
            elif was is None:
                await self._announce("added", info, None)
            elif was.uuid != info.uuid:
                await self._announce("removed", was, None)
                await self._announce("added", info, None)
            elif was != info:
                await self._announce("changed", info, was)
            self._dom_events.popleft()
        if not self._dom_ready:
            return
        # State diff: what the events did not say (a restart, an overflow).
        for domid, was in list(self._dom_published.items()):
            now = self._dom_current.get(domid)
            if now is None or now.uuid != was.uuid:
                await self._announce("removed", was, None)
        for domid, now in self._dom_current.items():
            was = self._dom_published.get(domid)
            if was is None:
                await self._announce("added", now, None)
            elif was != now:
                await self._announce("changed", now, was)

    async def _announce(self, kind, info, previous):
        n = self._dom_seq.get(info.domid, 0) + 1
        payload = {"host": self.host, "event": kind, **info._asdict()}
        if previous is not None:
            payload["previous"] = previous._asdict()
        subject = f"xsd.{self.host_token}.domain.{info.domid}.{kind}"
        ack = await self._js.publish(subject, json.dumps(payload).encode(), stream=self.stream,
                                     headers={"Nats-Msg-Id": f"{self.host_token}.{info.domid}.{n}"})
        self.counters["domain_duplicates" if ack.duplicate else "domain_events"] += 1
        self._dom_seq[info.domid] = n
        if kind == "removed":
            self._dom_published.pop(info.domid, None)
        else:
            self._dom_published[info.domid] = info
        table = {"domains": {str(d): i._asdict() for d, i in self._dom_published.items()},
                 "seq": {str(d): k for d, k in self._dom_seq.items()}}
        await self._kv.put(meta_key(self.host, DOMAINS), json.dumps(table).encode())

    # -- liveness -------------------------------------------------------------------------------

    async def _heartbeats(self):
        errors = _nats_errors()
        while not self._closed:
            self._check_mirror_gaps()
            beat = {"time": time.time(), "interval": self.heartbeat, "stats": self.stats}
            try:
                await self._kv.put(meta_key(self.host, HEARTBEAT), json.dumps(beat).encode())
            except errors as e:
                log.debug("xsd-fleet %s: heartbeat not written: %s", self.host, e)
            await asyncio.sleep(self.heartbeat)

