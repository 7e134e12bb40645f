"""Mirror: a local copy of the nodes some patterns select, kept equal to the store.

The Kubernetes informer, for xenstore.  Every user of ``watch`` otherwise
writes the same re-read logic for ``Event.above``, ``Resync`` and
``LostEvents``; a Mirror does it once:

    with Mirror(["/local/domain/*/device/*/*/state"], print, client=c) as m:
        m.sync()                     # m.values equals the store for these paths

Callbacks get ``Added(path, value)``, ``Changed(path, value, old)`` and
``Removed(path, old)``: exactly once per change the mirror can see (a value
that differs from the one it holds, a node that appeared or vanished), never
for a write of the same value, a permission change or an event on a node
the patterns do not select.  Like every watch consumer it sees the latest
state: a node written twice before the mirror re-reads it gives one Changed.

How (one job per part):
- ``MirrorCore`` is sans-I/O: it decides, for each event path, which subtree
  must be re-read (``root_for``), and re-reads it as a generator that yields
  ``("ls", path)`` / ``("read", path)`` and gets the answer or has its
  error thrown in (a node that does not exist or cannot be read counts as
  absent), then diffs the result against what it holds and returns the changes.
- ``Mirror`` (threads, on ``Client``) and ``AsyncMirror`` (asyncio, on
  ``AsyncClient``) run it with ``commands.drive`` / ``adrive`` over the
  client's ``read`` and ``ls``, from watch callbacks; what they do with its
  outcome (counters, subtrees to re-read on ``sync``) is ``_MirrorBase``'s.

Which events need which re-read.  The mirror watches each pattern's literal
prefix as a plain xenstore watch (so it hears about everything below it, and
the daemon reports the removal of an ancestor with the watched path itself,
docs/misc/xenstore.txt "WATCH"); ``**`` patterns are therefore exact too.
For an event on path E:
- E at or above a prefix: anything below may have changed; re-read below E.
- E selected, or on the way to selected nodes: re-read below E (E may be
  a removed subtree, or a removal and re-creation folded into one event).
- A write creates missing ancestors without an event of their own
  (xenstore.txt: "WRITE ... creates the node and any missing parents"):
  the highest selected ancestor of E the mirror does not hold is re-read.
- Anything else (E below a selected node with nothing selected under it,
  or off the patterns): ignored.
A ``Resync`` or ``LostEvents`` re-reads the whole prefix.
"""
import asyncio
import inspect
import logging
import threading
from typing import NamedTuple, Optional

from xenstore_protocol import XenstoreError
from xenstore_protocol.paths import is_child, join

from . import Disconnected, Event, Resync     # the public names (watchlib/__init__.py)
from . import commands
from .globs import components_of
from .patterns import Pattern

log = logging.getLogger("watchlib")


class Added(NamedTuple):
    path: str
    value: bytes


class Changed(NamedTuple):
    path: str
    value: bytes
    old: bytes


class Removed(NamedTuple):
    path: str
    old: bytes


def _ask(op: str, path: str):
    """One step of a re-read: ``client.read`` or ``client.ls`` of ``path``; None when
    the node is gone (ENOENT) or not ours to read (EACCES)."""
    try:
        return (yield op, path)
    except XenstoreError as e:
        if e.name in ("ENOENT", "EACCES"):
            return None
        raise


# What a re-read may fail with: the subtree is re-read again on sync().
_REREAD_FAILURES = (XenstoreError, Disconnected, TimeoutError, OSError)


class MirrorCore:
    """The mirror's state and decisions, no I/O (see the module docstring)."""

    def __init__(self, patterns):
        if isinstance(patterns, str):
            patterns = [patterns]
        self.patterns = [Pattern(p) for p in patterns]
        for p in self.patterns:
            if p.special:
                raise ValueError(f"a mirror holds nodes, not {p.text!r}")
        if not self.patterns:
            raise ValueError("a mirror needs at least one pattern")
        prefixes = sorted({p.prefix for p in self.patterns}, key=lambda p: (len(p), p))
        # The daemon watches: one per prefix not already below another.
        self.roots = []
        for prefix in prefixes:
            if not any(is_child(prefix, r) for r in self.roots):
                self.roots.append(prefix)
        self.values = {}

    def selected(self, path: str) -> bool:
        return any(p.matches_exactly(path) for p in self.patterns)

    def root_for(self, path: str) -> Optional[str]:
        """The subtree to re-read after an event on ``path``, or None."""
        if path.startswith("@"):
            return None
        parts = components_of(path)
        root = None
        for p in self.patterns:
            if is_child(p.prefix, path):
                return path                           # at or above a prefix
            if not is_child(path, p.prefix):
                continue
            # The highest selected ancestor we do not hold: created by this write.
            for depth in range(len(p.prefix_components), len(parts)):
                anc = "/" + "/".join(parts[:depth]) if depth else "/"
                if anc not in self.values and p.matches_exactly(anc):
                    if root is None or len(anc) < len(root):
                        root = anc
                    break
            if root is None and (p.matches_exactly(path) or p.could_extend(parts)):
                root = path
        return root

    def refresh(self, root: str):
        """Re-read what the patterns select at or below ``root``; apply and return the changes.

        A generator of ``(op, path)`` steps (see ``_ask``), run by ``commands.drive``
        or ``adrive``.
        """
        found = {}
        listed = {}                 # path -> its children: patterns sharing a prefix list it once
        parts = components_of(root)
        for p in self.patterns:
            if is_child(p.prefix, root):
                start, start_parts = p.prefix, p.prefix_components
            elif is_child(root, p.prefix):
                start, start_parts = root, parts
            else:
                continue
            stack = [(start, start_parts)]
            while stack:
                path, comps = stack.pop()
                if path not in found and p.matches_exactly(path):
                    value = yield from _ask("read", path)
                    if value is None:
                        continue                      # gone: so is everything below
                    found[path] = value
                if not p.could_extend(comps):
                    continue
                if path not in listed:
                    listed[path] = yield from _ask("ls", path)
                for name in listed[path] or ():
                    stack.append((join(path, name), comps + (name,)))
        return self.apply(root, found)

    def apply(self, root: str, found: dict) -> list:
        """Make the entries at or below ``root`` equal ``found``; the changes, in path order."""
        changes = []
        held = [path for path in self.values if is_child(path, root)]
        for path in held:
            if path not in found:
                changes.append(Removed(path, self.values.pop(path)))
        for path, value in found.items():
            old = self.values.get(path)
            if old is None:
                changes.append(Added(path, value))
            elif old != value:
                changes.append(Changed(path, value, old))
            self.values[path] = value
        changes.sort(key=lambda c: c.path)
        return changes


class _MirrorBase:
    def __init__(self, patterns, on_change, client, max_pending):
        self._core = MirrorCore(patterns)
        self._on_change = on_change
        self._client = client
        self._max_pending = max_pending
        self._subs = []
        self._dirty = set()       # subtrees whose re-read failed: re-read on sync()
        self.reads = 0            # subtree re-reads done
        self.lost = 0             # LostEvents items seen (each answered by a re-read)
        self.resyncs = 0          # Resync items seen (reconnects)

    @property
    def values(self) -> dict:
        """A copy of ``{path: value}`` for the selected nodes."""
        return dict(self._core.values)

    def __len__(self):
        return len(self._core.values)

    def __contains__(self, path):
        return path in self._core.values

    def __getitem__(self, path):
        return self._core.values[path]

    def get(self, path, default=None):
        return self._core.values.get(path, default)

    def _roots_for(self, item) -> list:
        if isinstance(item, Event):
            root = self._core.root_for(item.path)
            return [] if root is None else [root]
        if isinstance(item, Resync):
            self.resyncs += 1
        else:
            self.lost += 1
        return [item.subscription.pattern]          # Resync, LostEvents: the whole watch

    def close(self) -> None:
        for sub in self._subs:
            sub.cancel()
        self._subs = []

    def _failed(self, roots, error):
        """The re-read of ``roots[0]`` failed: the rest were not done; all wait for sync()."""
        self._dirty.update(roots)
        if not isinstance(error, Disconnected):      # a Resync follows a reconnect
            log.warning("watchlib: mirror re-read of %s failed: %s", roots, error)

    def _client_step(self, op, path):
        """A step of ``MirrorCore.refresh`` on the client (a coroutine on an AsyncClient)."""
        return getattr(self._client, op)(path)

    def _refreshed(self, root, changes) -> list:
        """``root`` was re-read: count it, forget its older failures; the changes to
        hand to ``on_change`` (none without one)."""
        self.reads += 1
        self._dirty = {d for d in self._dirty if not is_child(d, root)}
        return changes if self._on_change is not None else []


class Mirror(_MirrorBase):
    """A blocking Mirror on a ``Client``; ``on_change(change)`` runs on the client's
    dispatcher thread (so not concurrently with the client's other callbacks),
    the initial Added items on the constructing thread.  ``close()`` or use it as
    a context manager."""

    def __init__(self, patterns, on_change=None, *, client=None, max_pending=4096):
        if client is None:
            from . import default_client
            client = default_client()
        super().__init__(patterns, on_change, client, max_pending)
        self._lock = threading.RLock()
        with self._lock:
            try:
                for root in self._core.roots:
                    self._subs.append(client.watch(root, self._on_item, initial=False,
                                                   max_pending=max_pending))
                for root in self._core.roots:
                    self._refresh([root])
            except BaseException:
                self.close()
                raise

    def _on_item(self, item):
        roots = self._roots_for(item)
        if roots:
            with self._lock:
                self._refresh(roots)

    def _refresh(self, roots, raise_errors=False):
        for i, root in enumerate(roots):
            try:
                changes = commands.drive(self._core.refresh(root), self._client_step)
            except _REREAD_FAILURES as e:
                self._failed(roots[i:], e)
                if raise_errors:
                    raise
                return
            for change in self._refreshed(root, changes):
                try:
                    self._on_change(change)
                except Exception:
                    log.exception("watchlib: mirror callback failed on %s", change)

    def sync(self, timeout=None) -> None:
        """Return once the mirror equals the store for the selected paths, as of
        the call (every change completed before it has been applied and its
        callback has returned).  Not from ``on_change``."""
        self._client.sync(timeout)
        with self._lock:
            while self._dirty:
                self._refresh(sorted(self._dirty, key=len), raise_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class AsyncMirror(_MirrorBase):
    """The asyncio Mirror on an ``AsyncClient``: ``m = await AsyncMirror.start(...)``
    or ``async with AsyncMirror(...) as m``; ``on_change`` may be a coroutine
    function (awaited before the next change)."""

    def __init__(self, patterns, on_change=None, *, client, max_pending=4096):
        super().__init__(patterns, on_change, client, max_pending)
        self._lock = asyncio.Lock()

    @classmethod
    async def start(cls, patterns, on_change=None, *, client, max_pending=4096):
        mirror = cls(patterns, on_change, client=client, max_pending=max_pending)
        await mirror._start()
        return mirror

    async def _start(self):
        async with self._lock:
            try:
                for root in self._core.roots:
                    self._subs.append(await self._client.watch(
                        root, self._on_item, initial=False, max_pending=self._max_pending))
                for root in self._core.roots:
                    await self._refresh([root])
            except BaseException:
                self.close()
                raise

    async def _on_item(self, item):
        roots = self._roots_for(item)
        if roots:
            async with self._lock:
                await self._refresh(roots)

    async def _refresh(self, roots, raise_errors=False):
        for i, root in enumerate(roots):
            try:
                changes = await commands.adrive(self._core.refresh(root), self._client_step)
            except _REREAD_FAILURES as e:
                self._failed(roots[i:], e)
                if raise_errors:
                    raise
                return
            for change in self._refreshed(root, changes):
                try:
                    result = self._on_change(change)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("watchlib: mirror callback failed on %s", change)

    async def sync(self, timeout=None) -> None:
        """As ``Mirror.sync``."""
        await self._client.sync(timeout)
        async with self._lock:
            while self._dirty:
                await self._refresh(sorted(self._dirty, key=len), raise_errors=True)

    async def __aenter__(self):
        await self._start()
        return self

    async def __aexit__(self, *exc):
        self.close()
