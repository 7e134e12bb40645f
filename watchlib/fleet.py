"""Every host's xenstore in one NATS JetStream key-value bucket: the key scheme and the consumer.

The bridge (``xsd-fleet``, package ``xsd_fleet``) writes each host's mirrored
nodes into the bucket; ``FleetMirror`` gives a management plane the same
``Added``/``Changed``/``Removed`` callbacks as ``watchlib.Mirror``, across hosts.
This module is the one place where keys are made and read back.

Keys (NATS KV keys allow ``[-/_=.A-Za-z0-9]``, ``.`` separating tokens, no
empty token):

    <host>.<component>.<component>...       a node:  host-7 /local/domain/3/name
                                             -> host-7.local.domain.3.name
    <host>._                                 the root node "/"
    <host>.=heartbeat, <host>.=domains       the bridge's own keys ("=" never
                                             comes out of the escaping)

Each token (the host name, each path component) is escaped on its own:
``A-Z a-z 0-9 -`` stay as they are; every other byte of its UTF-8 form,
``_`` included, becomes ``_`` and two upper-case hex digits (``@`` -> ``_40``,
``_`` -> ``_5F``, ``.`` -> ``_2E``).  The mapping is one-to-one and reversible
(``path_of_key(key_of(host, path)) == (host, path)``), and since path
components map to tokens, NATS wildcards work per component: ``*.local.domain.*.name``.
"""
import asyncio
import fnmatch
import inspect
import json
import logging
import time
from typing import Optional

from .mirror import Added, Changed, Removed
from .patterns import Pattern

log = logging.getLogger("watchlib")

DEFAULT_BUCKET = "xsd"
KV_PREFIX = "$KV."               # JetStream KV: a bucket's keys are subjects $KV.<bucket>.<key>
META = "="                       # first character of the bridge's own keys after the host
HEARTBEAT = "=heartbeat"
DOMAINS = "=domains"
_PLAIN = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")
_HEX = "0123456789ABCDEF"


def escape_token(text: str) -> str:
    if not text:
        raise ValueError("an empty name has no key")
    out = []
    for byte in text.encode("utf-8"):
        out.append(chr(byte) if byte in _PLAIN else f"_{byte:02X}")
    return "".join(out)


def unescape_token(token: str) -> str:
    raw = bytearray()
    i = 0
    while i < len(token):
        c = token[i]
        if c == "_":
            pair = token[i + 1:i + 3]
            if len(pair) != 2 or any(ch not in _HEX for ch in pair):
                raise ValueError(f"bad escape in key token {token!r}")
            raw.append(int(pair, 16))
            i += 3
        elif ord(c) in _PLAIN:
            raw.append(ord(c))
            i += 1
        else:
            raise ValueError(f"bad character in key token {token!r}")
    return raw.decode("utf-8")


def key_of(host: str, path: str) -> str:
    """The bucket key of ``path`` on ``host``."""
    if path == "/":
        return f"{escape_token(host)}._"
    if not path.startswith("/"):
        raise ValueError(f"not an absolute path: {path!r}")
    return ".".join([escape_token(host)] + [escape_token(c) for c in path[1:].split("/")])


def meta_key(host: str, name: str) -> str:
    return f"{escape_token(host)}.{name}"


def path_of_key(key: str):
    """``(host, path)`` for a node's key; ``(host, None)`` for a bridge key (heartbeat...)."""
    host_token, _, rest = key.partition(".")
    host = unescape_token(host_token)
    if not rest:
        raise ValueError(f"key {key!r} has no path")
    if rest.startswith(META):
        return host, None
    if rest == "_":
        return host, "/"
    return host, "/" + "/".join(unescape_token(t) for t in rest.split("."))


async def ensure_bucket(js, bucket: str):
    """The bucket, made (one value per key, file storage) if no one has made it yet."""
    from nats.js.errors import BucketNotFoundError, NotFoundError
    try:
        return await js.key_value(bucket)
    except (BucketNotFoundError, NotFoundError):
        return await js.create_key_value(bucket=bucket, history=1)


def subject_filter(host_glob: str, path_glob: str) -> str:
    """The narrowest NATS key filter covering a host glob and a path pattern
    (literal tokens where the globs are literal, ``*`` and ``>`` elsewhere);
    FleetMirror filters exactly after it."""
    host = escape_token(host_glob) if not any(ch in host_glob for ch in "*?[") else "*"
    tokens = [host]
    if path_glob != "/":
        for comp in path_glob[1:].split("/"):
            if comp == "**":
                tokens.append(">")
                break
            tokens.append("*" if comp == "*" else escape_token(comp))
    return ".".join(tokens)


class FleetMirror:
    """``{(host, path): value}`` for the hosts matching ``host_glob`` (fnmatch) and the
    paths matching ``path_glob`` (a watchlib pattern), from the bucket's watch.

    ``on_change(host, change)`` gets ``Added``/``Changed``/``Removed`` (plain or
    coroutine function), first one ``Added`` per existing key.  History and
    resume come from JetStream: the watch is an ordered consumer with
    "last per subject" delivery, which nats-py re-creates from the last
    sequence it saw after a gap or a reconnect.

        fm = await FleetMirror.start(servers, "host-*", "/local/domain/*/device/**/state", cb)
        await fm.sync()            # fm.values reflects everything in the bucket now
        await fm.close()
    """

    def __init__(self, servers, host_glob: str = "*", path_glob: str = "/**", on_change=None, *,
                 bucket: str = DEFAULT_BUCKET, idle_heartbeat: float = 0.5):
        self.servers = servers
        self.host_glob = host_glob
        self.pattern = Pattern(path_glob)
        self.on_change = on_change
        self.bucket = bucket
        # The server's heartbeat to the watch: two missed (a broker restart, a lost
        # consumer) and nats-py re-creates the consumer from the last sequence seen.
        self.idle_heartbeat = idle_heartbeat
        self.values = {}           # (host, path) -> value
        self.heartbeats = {}       # host -> the last heartbeat (its JSON, "time" = bridge clock)
        self.messages = 0          # node messages received (all hosts and paths of the filter)
        self.heartbeat_messages = 0
        self._nc = None
        self._sub = None
        self._last_seq = 0
        self._lock = asyncio.Lock()

    @classmethod
    async def start(cls, servers, host_glob="*", path_glob="/**", on_change=None, **kwargs):
        fm = cls(servers, host_glob, path_glob, on_change, **kwargs)
        await fm._start()
        return fm

    async def _start(self):
        import nats
        from nats.js import api
        self._nc = await nats.connect(self.servers, max_reconnect_attempts=-1,
                                      reconnect_time_wait=0.2)
        js = self._nc.jetstream()
        await ensure_bucket(js, self.bucket)
        subject = f"{KV_PREFIX}{self.bucket}.{subject_filter(self.host_glob, self.pattern.text)}"
        meta_subject = f"{KV_PREFIX}{self.bucket}.*.{HEARTBEAT}"
        self._sub = await js.subscribe(subject, stream=f"KV_{self.bucket}", cb=self._on_msg,
                                       ordered_consumer=True, idle_heartbeat=self.idle_heartbeat,
                                       deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT)
        self._hb_sub = await js.subscribe(meta_subject, stream=f"KV_{self.bucket}",
                                          cb=self._on_heartbeat, ordered_consumer=True,
                                          idle_heartbeat=self.idle_heartbeat,
                                          deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT)

    async def _on_heartbeat(self, msg):
        self.heartbeat_messages += 1
        host, _ = path_of_key(msg.subject[len(KV_PREFIX) + len(self.bucket) + 1:])
        if fnmatch.fnmatchcase(host, self.host_glob) and msg.data:
            try:
                self.heartbeats[host] = json.loads(msg.data)
            except ValueError:
                log.warning("watchlib.fleet: bad heartbeat from %s", host)

    def age(self, host: str, now: Optional[float] = None) -> Optional[float]:
        """Seconds since ``host``'s bridge last wrote its heartbeat (None: never seen)."""
        beat = self.heartbeats.get(host)
        if beat is None:
            return None
        return (time.time() if now is None else now) - beat["time"]

    async def _on_msg(self, msg):
        self.messages += 1
        async with self._lock:
            self._last_seq = max(self._last_seq, msg.metadata.sequence.stream)
            key = msg.subject[len(KV_PREFIX) + len(self.bucket) + 1:]
            try:
                host, path = path_of_key(key)
            except ValueError:
                log.warning("watchlib.fleet: key %r is not one of ours", key)
                return
            if path is None or not fnmatch.fnmatchcase(host, self.host_glob) \
                    or not self.pattern.matches_exactly(path):
                return
            op = msg.header.get("KV-Operation") if msg.header else None
            old = self.values.get((host, path))
            if op in ("DEL", "PURGE"):
                if old is None:
                    return
                del self.values[(host, path)]
                change = Removed(path, old)
            else:
                self.values[(host, path)] = msg.data
                if old is None:
                    change = Added(path, msg.data)
                elif old != msg.data:
                    change = Changed(path, msg.data, old)
                else:
                    return
            if self.on_change is not None:
                try:
                    result = self.on_change(host, change)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("watchlib.fleet: callback failed on %s %s", host, change)

    async def sync(self, timeout: float = 30.0) -> None:
        """Return once every message the bucket holds for our filter, as of the call,
        has been applied (the consumer has nothing pending and we have handled
        what it delivered).  Pair it with the bridges' own ``sync()`` for an
        end-to-end barrier."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                info = await self._sub.consumer_info()
                if info.num_pending == 0 and self._last_seq >= info.delivered.stream_seq:
                    async with self._lock:
                        return
            except Exception as e:           # the ordered consumer is being re-created
                log.debug("watchlib.fleet: consumer info: %s", e)
            if time.monotonic() > deadline:
                raise TimeoutError("FleetMirror.sync: the watch did not catch up")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.close()
            self._nc = None

    async def __aenter__(self):
        await self._start()
        return self

    async def __aexit__(self, *exc):
        await self.close()
