"""The watch registry: who watches what, and which watches a change fires.

Watches are indexed in a path trie (``xsd._native``, C when built), so the
cost of a change depends on the depth of its path, not on how many watches
exist: C xenstored instead scans every watch of every connection per write.
Matching watches fire in registration order (ids grow with registration),
as C xenstored orders them on one connection.

Two registries with one interface: ``WatchRegistry`` keeps a Python object
per watch and is the oracle; ``CWatchRegistry`` keeps each watch as one C
record (xsd/_native/watchreg.h) and does matching, the XSA-115 check and the
event paths in C, one call per fired change, so a watch costs no Python
object (issue 17).  ``new_registry`` picks the C one on the C store.  Either
way ``session.watches`` answers ``len``, ``key in``, ``get(key)``,
``values()`` (``Watch`` objects; made on demand by the C one) and
``text_bytes()``, and ``Session.queue_event`` gets the watch's key as the
handle for an overflow marker (session.py).

A deep watch (more than ``TRIE_DEPTH`` components) is filed in the trie at
its first ``TRIE_DEPTH`` components only, and matches found there are checked
against its full path.  The trie spends a node per component: a watch on a
1,535-level path cost about 100 KiB, 25 times its request (issue 12).  Filed
short, it costs a few KiB whatever its depth; no real path comes near the cut.
"""
import itertools
from functools import partial

from xenstore_protocol.paths import is_child, parent, relative_to
from xenstore_protocol.perms import encode_list

from .._native import BACKEND, MATCH_ANCESTORS, MATCH_DESCENDANTS, WatchTrie
from .permissions import can_read

TRIE_DEPTH = 32     # components of a watch path filed in the trie (xenstore paths: < 10)

if BACKEND == "cffi":
    from .._native.watchreg import (TRIE_DEPTH as _C_TRIE_DEPTH, NativeWatchRegistry,
                                    deliver_payloads)
    if _C_TRIE_DEPTH != TRIE_DEPTH:
        raise ImportError("xsd._native: watchreg.h's trie depth differs from watches.py's")


def _trie_key(path: str) -> str:
    """``path`` cut after ``TRIE_DEPTH`` components; specials and shallow paths unchanged."""
    if path.count("/") <= TRIE_DEPTH:
        return path
    cut = 0
    for _ in range(TRIE_DEPTH):
        cut = path.index("/", cut + 1)
    return path[:cut]


def watch_key(path: str, token: bytes) -> bytes:
    """What identifies a watch on its connection (EEXIST, UNWATCH): path and token in one
    object, ``path NUL token``. Neither holds a NUL (they are wire fields), so no two
    differ only in where one ends; the path is ASCII (paths.decode)."""
    return b"%s\0%s" % (path.encode("ascii"), token)


class Watch:
    """One registration. Its path and token are kept only inside ``key`` (one object,
    also the key of ``session.watches``): a watch costs a few hundred bytes, and a
    path string, a token and the tuple joining them were a third of them (issue 17).
    Whether the client gave a relative path is its class, not a slot, for the same
    reason (four slots fit pymalloc's 64-byte class, five take 80)."""

    __slots__ = ("id", "session", "key", "sep")
    relative = False          # the client gave an absolute path: events are absolute too

    def __init__(self, watch_id: int, session, key: bytes):
        self.id = watch_id
        self.session = session
        self.key = key            # watch_key(path, token)
        self.sep = key.index(0)   # where the path ends

    @property
    def path(self) -> str:
        """Absolute, or a special "@name"."""
        return self.key[:self.sep].decode("ascii")

    @property
    def token(self) -> bytes:
        return self.key[self.sep + 1:]

    def text_bytes(self) -> int:
        """len(path) + len(token), what quota.memory_of_watch charges beyond the record."""
        return len(self.key) - 1

    def event_path(self, path: str) -> str:
        return path


class RelativeWatch(Watch):
    """The client gave a relative path: its events are relative to the client's home too."""

    __slots__ = ()
    relative = True

    def event_path(self, path: str) -> str:
        return relative_to(path, self.session.domid)


class SessionWatches(dict):
    """A session's watches under the Python registry: ``watch_key`` -> ``Watch``."""

    __slots__ = ()

    def text_bytes(self) -> int:
        """Their paths' and tokens' lengths added (quota.memory_of_watches)."""
        return sum(len(key) - 1 for key in self)


def new_registry(store, python: bool = False):
    """The daemon's registry: in C beside the C store, else (or asked: ``--python-watches``,
    for comparison) the Python one."""
    if not python and BACKEND == "cffi" and getattr(store, "handle", None) is not None:
        return CWatchRegistry(store)
    return WatchRegistry(store)


class WatchRegistry:
    """The Python registry (XSD_NATIVE=python), and the C one's oracle."""

    def __init__(self, store):
        self.store = store
        self.trie = WatchTrie()
        self.by_id = {}
        self.deep = set()         # ids of watches filed in the trie under a cut path
        self._ids = itertools.count(1)
        self.special_perms = {}   # "@introduceDomain" -> perms set by SET_PERMS

    def __len__(self) -> int:
        return len(self.by_id)

    def attach(self, session) -> None:
        """A session's (empty) watch table; Session starts with one (CWatchRegistry's differs)."""
        session.watches = SessionWatches()

    def detach(self, session) -> None:
        """The session is closed: its watches go."""
        self.remove_all(session)

    def sessions_changed(self) -> None:
        """Sessions' domid, target or privilege may have changed: read at firing here."""

    def session_changed(self, session) -> None:
        """``session``'s may have: the same."""

    def add(self, session, path: str, token: bytes, relative: bool) -> Watch:
        watch = (RelativeWatch if relative else Watch)(next(self._ids), session,
                                                       watch_key(path, token))
        key = _trie_key(path)
        self.trie.add(key, watch.id)
        if key is not path:
            self.deep.add(watch.id)
        self.by_id[watch.id] = watch
        session.watches[watch.key] = watch
        return watch

    def remove(self, watch: Watch) -> None:
        self.trie.remove(_trie_key(watch.path), watch.id)
        self.deep.discard(watch.id)
        del self.by_id[watch.id]
        del watch.session.watches[watch.key]

    def _match(self, path: str, flags: int) -> list:
        """The trie's ids for ``path``, deep watches checked against their full paths."""
        ids = self.trie.match(path, flags)
        deep = self.deep
        if deep and ids:
            by_id = self.by_id
            ids = [i for i in ids if i not in deep
                   or is_child(path, by_id[i].path)
                   or (flags & MATCH_DESCENDANTS and is_child(by_id[i].path, path))]
        return ids

    def remove_all(self, session) -> None:
        for watch in list(session.watches.values()):
            self.remove(watch)

    # -- firing -------------------------------------------------------------
    def _permitted(self, session, perms, parent_perms) -> bool:
        """XSA-115: an unprivileged watcher must be able to read the node or its parent."""
        return (session.privileged or can_read(session, perms)
                or (parent_perms is not None and can_read(session, parent_perms)))

    def _parent_perms(self, path: str):
        if path == "/":
            return None
        node = self.store.get(parent(path))
        return node.perms if node is not None else None

    def fire_change(self, path: str, perms, old_perms=None) -> None:
        """A node was created, written, or had its permissions changed.

        On a permission change (``old_perms`` given) a watcher that could
        read the node before or after is told (C xenstored passes both).
        """
        ids = self._match(path, MATCH_ANCESTORS)
        if not ids:
            return
        if len(ids) > 1:
            ids.sort()
        by_id = self.by_id
        parent_perms = False       # looked up at most once, and only if needed
        for watch_id in ids:
            watch = by_id[watch_id]
            session = watch.session
            if not session.privileged:
                if parent_perms is False:
                    parent_perms = self._parent_perms(path)
                if not (self._permitted(session, perms, parent_perms)
                        or (old_perms is not None and can_read(session, old_perms))):
                    continue
            session.queue_event(watch.event_path(path), watch.token, watch.key)

    def fire_remove(self, root: str, removed: dict) -> None:
        """The subtree at ``root`` was deleted; ``removed`` maps each deleted path to its perms,
        children before parents, ``root`` last (ops.subtree).

        As C xenstored: first each deleted node below ``root``, in that order, tells the
        watches on exactly that node; then watches on ``root`` or above see ``root``.  A
        watch below ``root`` on a node that did not exist sees nothing.
        """
        ids = self._match(root, MATCH_ANCESTORS | MATCH_DESCENDANTS)
        if not ids:
            return
        ids.sort()
        by_id = self.by_id
        below = {}
        above = []
        for watch_id in ids:
            watch = by_id[watch_id]
            watch_path = watch.path
            if watch_path != root and is_child(watch_path, root):
                if watch_path in removed:
                    below.setdefault(watch_path, []).append(watch)
            else:
                above.append(watch)
        root_parent_perms = self._parent_perms(root)
        if below:
            for node_path in removed:
                for watch in below.get(node_path, ()):
                    perms, parent_perms = removed[node_path], removed.get(parent(node_path))
                    if self._permitted(watch.session, perms, parent_perms):
                        watch.session.queue_event(watch.event_path(node_path), watch.token, watch.key)
        perms = removed[root]
        for watch in above:
            if self._permitted(watch.session, perms, root_parent_perms):
                watch.session.queue_event(watch.event_path(root), watch.token, watch.key)

    def fire_special(self, name: str) -> None:
        """``@introduceDomain`` / ``@releaseDomain``: privileged watchers, or as SET_PERMS allows."""
        ids = self.trie.match(name, MATCH_ANCESTORS)
        ids.sort()
        perms = self.special_perms.get(name)
        for watch_id in ids:
            watch = self.by_id[watch_id]
            session = watch.session
            if session.privileged or (perms is not None and can_read(session, perms)):
                session.queue_event(name, watch.token, watch.key)


class _NativeSessionWatches:
    """``session.watches`` under the C registry: a view of the session's C records.
    ``values()`` and ``get`` make ``Watch`` objects on demand; none is kept."""

    __slots__ = ("_native", "handle", "_session")

    def __init__(self, native, handle: int, session):
        self._native = native
        self.handle = handle        # the session in C (watchreg.h)
        self._session = session

    def __len__(self) -> int:
        return self._native.count(self.handle)

    def __contains__(self, key: bytes) -> bool:
        return self._native.find(self.handle, key) is not None

    def _watch(self, number: int, relative: bool, key: bytes):
        return (RelativeWatch if relative else Watch)(number, self._session, key)

    def get(self, key: bytes, default=None):
        found = self._native.find(self.handle, key)
        return default if found is None else self._watch(*found, key)

    def values(self) -> list:
        """The session's watches in registration order."""
        return [self._watch(*listed) for listed in self._native.session_watches(self.handle)]

    def text_bytes(self) -> int:
        return self._native.text_bytes(self.handle)


class CWatchRegistry:
    """The registry in C: one record per watch, matching, XSA-115 and event paths in
    one C call per fired change; Python only hands the deliveries to the sessions."""

    def __init__(self, store):
        self.store = store
        self.trie = WatchTrie()     # filled by C; the request engine reads it (may fire?)
        self._native = NativeWatchRegistry(self.trie, store.handle)
        self._sessions = []         # handle -> Session (None: free)
        self.special_perms = {}     # "@introduceDomain" -> perms set by SET_PERMS
        self._encoded = {}          # perms tuple -> b"n0\0r5\0"
        # deliver(records, path): queue the deliveries of a fire call given ``path`` (bytes)
        # (watchreg.h's records, the request engine's or a fire_* call's) on their sessions,
        # in order; bound here, not a method: one Python frame less per watched change.
        self.deliver = partial(deliver_payloads, sessions=self._sessions)

    def __len__(self) -> int:
        return len(self._native)

    def stats(self) -> dict:
        return self._native.stats()

    # -- sessions ------------------------------------------------------------
    def attach(self, session):
        """Give ``session`` a handle in C, its facts pushed, and the view of its watches.
        Done when the request engine first configures the session (``session_handle``),
        so that its first WATCH is the engine's too, else at its first watch (``add``);
        either way after a guest's target is set (guest.py sets it after opening).  A
        handle costs a 48-byte slot in C and the view (which replaces the empty dict the
        session opened with): docs/benchmarks.md, "Issue 17: a session's first WATCH in C"."""
        native = self._native
        handle = native.session_new()
        sessions = self._sessions
        if handle == len(sessions):
            sessions.append(session)
        else:
            sessions[handle] = session
        native.session_set(handle, session.domid, session.target, session.privileged)
        view = session.watches = _NativeSessionWatches(native, handle, session)
        return view

    def _handle(self, session):
        """``session``'s handle here, or None while it has had no watch."""
        view = session.watches
        if isinstance(view, _NativeSessionWatches) and view._native is self._native:
            return view.handle
        return None

    def session_handle(self, session):
        """``session``'s handle in C, given now if it has none (the request engine registers
        its watches there: fastpath.configure_watches); None once it is closed (``detach``
        freed its handle: a new one would never be freed)."""
        handle = self._handle(session)
        if handle is None and not session.closed:
            handle = self.attach(session).handle
        return handle

    def detach(self, session) -> None:
        handle = self._handle(session)
        if handle is not None:
            self._native.session_free(handle)
            self._sessions[handle] = None
            session.watches = SessionWatches()

    def sessions_changed(self) -> None:
        """Push every session's domid, target and privilege again (Daemon.state_changed
        follows every change of a target: SET_TARGET, a released domain)."""
        native = self._native
        for handle, session in enumerate(self._sessions):
            if session is not None:
                native.session_set(handle, session.domid, session.target, session.privileged)

    def session_changed(self, session) -> None:
        """Push ``session``'s facts again, if it has a handle."""
        handle = self._handle(session)
        if handle is not None:
            self._native.session_set(handle, session.domid, session.target, session.privileged)

    # -- watches -------------------------------------------------------------
    def add(self, session, path: str, token: bytes, relative: bool) -> Watch:
        view = session.watches if self._handle(session) is not None else self.attach(session)
        number = self._native.add(view.handle, path.encode("ascii"), token, relative)
        if number is None:
            raise ValueError("(%r, %r) is already watched" % (path, token))
        return view._watch(number, relative, watch_key(path, token))

    def remove(self, watch: Watch) -> None:
        handle = self._handle(watch.session)
        if handle is None or not self._native.remove(handle, watch.key):
            raise KeyError(watch.key)

    def remove_all(self, session) -> None:
        handle = self._handle(session)
        if handle is not None:                          # else it never watched anything
            self._native.session_clear(handle)

    # -- firing --------------------------------------------------------------
    def _encode(self, perms) -> bytes:
        raw = self._encoded.get(perms)
        if raw is None:
            if len(self._encoded) >= 4096:
                self._encoded.clear()
            raw = self._encoded[perms] = encode_list(perms)
        return raw

    def fire_change(self, path: str, perms, old_perms=None) -> None:
        """As WatchRegistry.fire_change."""
        raw = path.encode("ascii")
        deliveries = self._native.fire_change(
            raw, self._encode(perms), None if old_perms is None else self._encode(old_perms))
        if deliveries:
            self.deliver(deliveries, raw)

    def fire_remove(self, root: str, removed: dict) -> None:
        """As WatchRegistry.fire_remove; ``removed`` is read only if watches lie below root."""
        def removed_below(paths):
            wanted = {p.decode("ascii") for p in paths}
            encode = self._encode
            return [(node_path.encode("ascii"), encode(perms),
                     None if (pp := removed.get(parent(node_path))) is None else encode(pp))
                    for node_path, perms in removed.items() if node_path in wanted]

        raw = root.encode("ascii")
        deliveries = self._native.fire_remove(raw, self._encode(removed[root]), removed_below)
        if deliveries:
            self.deliver(deliveries, raw)

    @property
    def native(self):
        """The C registry (the request engine fires through it: fastpath.py)."""
        return self._native

    def fire_special(self, name: str) -> None:
        """As WatchRegistry.fire_special."""
        perms = self.special_perms.get(name)
        raw = name.encode("ascii")
        deliveries = self._native.fire_special(
            raw, None if perms is None else self._encode(perms))
        if deliveries:
            self.deliver(deliveries, raw)
