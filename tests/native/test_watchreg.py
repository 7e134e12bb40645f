"""The C watch registry (CWatchRegistry, xsd/_native/watchreg.c) against the Python one.

Both registries sit over one C node store and get the same random operations:
registrations (absolute, relative, deep beyond TRIE_DEPTH, special), unwatches,
session clears and closes, target changes, writes and SET_PERMS with random
permissions, subtree removals, special events with and without SET_PERMS on
the name.  Privileged and guest sessions (one acting for another through
SET_TARGET) watch throughout.  The Python registry is the oracle: every
delivery (session, event path, token, watch key) must be the same, in the
same order, and so must what each session's ``watches`` answers.

The sessions are real ``Session`` objects whose ``queue_event`` notes each
delivery in one shared log instead of applying the delivery policy (budgets,
coalescing), which is Python's alone and not under test here.
"""
import os
import random

import pytest

from xenstore_protocol.perms import Perm
from xsd.core.session import Session
from xsd.core.watches import TRIE_DEPTH, WatchRegistry, watch_key

if os.environ.get("XSD_NATIVE", "").strip().lower() == "python":
    pytest.skip("the C registry needs the C build (XSD_NATIVE=python)", allow_module_level=True)

from xsd.core.cstore import CStore            # noqa: E402
from xsd.core.watches import CWatchRegistry   # noqa: E402


class RecordingSession(Session):
    def __init__(self, log, **kwargs):
        super().__init__(lambda data: None, [], **kwargs)
        self.log = log

    def queue_payload(self, payload, watch=None):
        """Every event either registry delivers (queue_event makes its payload first)."""
        path, _, token = payload[:-1].partition(b"\0")
        self.log.append((self.name, path.decode("ascii"), token, watch))


DEEP = "/d/" + "/".join("x%d" % i for i in range(TRIE_DEPTH + 6))
TREE = ["/a", "/a/b", "/a/b/c", "/a/e", "/local/domain/1/data", "/local/domain/1/data/x",
        "/local/domain/2/data", "/local/domain/2/data/y", "/local/domain/1",
        DEEP[:DEEP.index("/x%d" % (TRIE_DEPTH - 2))], DEEP[:DEEP.index("/x%d" % (TRIE_DEPTH + 2))],
        DEEP]
SPECIALS = ["@introduceDomain", "@releaseDomain"]
WATCHED = ["/", "/a", "/a/b", "/a/b/c", "/a/b/c/z", "/a/e", "/local/domain/1",
           "/local/domain/1/data", "/local/domain/1/data/x", "/local/domain/2/data/y",
           DEEP[:DEEP.index("/x%d" % (TRIE_DEPTH - 1))], DEEP[:DEEP.index("/x%d" % (TRIE_DEPTH + 2))],
           DEEP, DEEP + "/more", *SPECIALS]
TOKENS = [b"t", b"u", b"", b"tok\xff"]
# (domid, privileged, target): dom0, a second privileged socket, guests 1, 2, 3 (acting for 1)
SESSIONS = [(0, True, None), (0, True, None), (1, False, None), (2, False, None), (3, False, 1)]


def random_perms(rng):
    owner = rng.choice([0, 1, 2, 3, 7])
    perms = [Perm(rng.choice("nrwb"), owner)]
    for _ in range(rng.randrange(3)):
        perms.append(Perm(rng.choice("nrwb"), rng.choice([0, 1, 2, 3, 9])))
    return tuple(perms)


class Pair:
    """The two registries, their sessions (same names, one of each per registry) and logs."""

    def __init__(self, rng):
        self.rng = rng
        self.store = CStore()
        self.py, self.c = WatchRegistry(self.store), CWatchRegistry(self.store)
        self.py_log, self.c_log = [], []
        self.sessions = []        # [(python session, C session)]
        for i, (domid, privileged, target) in enumerate(SESSIONS):
            self.open(f"s{i}", domid, privileged, target)

    def open(self, name, domid, privileged, target):
        pair = []
        for registry, log in ((self.py, self.py_log), (self.c, self.c_log)):
            s = RecordingSession(log, domid=domid, privileged=privileged, name=name)
            s.target = target
            registry.attach(s)
            pair.append(s)
        self.sessions.append(tuple(pair))

    def check(self):
        assert self.c_log == self.py_log
        assert len(self.c) == len(self.py)
        assert len(self.c.trie) == len(self.c)
        for ps, cs in self.sessions:
            assert len(cs.watches) == len(ps.watches)
            assert cs.watches.text_bytes() == ps.watches.text_bytes()
            assert [(w.id, w.path, w.token, w.relative, w.key) for w in cs.watches.values()] == \
                [(w.id, w.path, w.token, w.relative, w.key) for w in ps.watches.values()]

    # -- operations, each applied to both --------------------------------------------
    def watch(self):
        rng = self.rng
        ps, cs = rng.choice(self.sessions)
        relative = rng.random() < 0.25 and ps.domid in (1, 2)
        if relative:
            path = "/local/domain/%d/%s" % (ps.domid, rng.choice(["data", "data/x", "data/y"]))
        else:
            path = rng.choice(WATCHED)
        token = rng.choice(TOKENS)
        key = watch_key(path, token)
        assert (key in cs.watches) == (key in ps.watches)
        if key in ps.watches:
            with pytest.raises(ValueError):
                self.c.add(cs, path, token, relative)
            return
        pw = self.py.add(ps, path, token, relative)
        cw = self.c.add(cs, path, token, relative)
        assert (cw.id, cw.key, cw.relative, cw.session) == (pw.id, pw.key, pw.relative, cs)
        # the INITIAL event, as Daemon.fire gives it
        ps.queue_event(pw.event_path(pw.path), pw.token, pw.key)
        cs.queue_event(cw.event_path(cw.path), cw.token, cw.key)

    def unwatch(self):
        ps, cs = self.rng.choice(self.sessions)
        keys = list(ps.watches)
        if not keys:
            assert len(cs.watches) == 0
            return
        key = self.rng.choice(keys)
        self.py.remove(ps.watches.get(key))
        self.c.remove(cs.watches.get(key))
        assert key not in cs.watches and cs.watches.get(key) is None

    def clear(self):
        ps, cs = self.rng.choice(self.sessions)
        self.py.remove_all(ps)
        self.c.remove_all(cs)

    def close_and_reopen(self):
        i = self.rng.randrange(len(self.sessions))
        ps, cs = self.sessions.pop(i)
        self.py.detach(ps)
        self.c.detach(cs)
        self.open(ps.name + "'", ps.domid, ps.privileged, ps.target)

    def retarget(self):
        target = self.rng.choice([None, 1, 2])
        for ps, cs in self.sessions:
            if ps.domid == 3:
                ps.target = cs.target = target
        self.py.sessions_changed()
        self.c.sessions_changed()

    def write(self):
        rng, store = self.rng, self.store
        path = rng.choice(TREE)
        old = None
        node = store.get(path)
        perms = random_perms(rng)
        if node is None:
            store.write(path, b"v", perms)      # missing parents take the same perms here
        elif rng.random() < 0.5:
            old = node.perms
            store.set_perms(path, perms)
        else:
            perms = node.perms
        for registry in (self.py, self.c):
            registry.fire_change(path, perms, old)

    def remove(self):
        path = self.rng.choice(TREE[:-1] + ["/local/domain/2"])
        if self.store.get(path) is None:
            return
        removed = self.store.remove_tree(path)
        for registry in (self.py, self.c):
            registry.fire_remove(path, removed)

    def special(self):
        rng = self.rng
        name = rng.choice(SPECIALS)
        if rng.random() < 0.3:
            perms = random_perms(rng)
            self.py.special_perms[name] = self.c.special_perms[name] = perms
        for registry in (self.py, self.c):
            registry.fire_special(name)


OPS = [("watch", 6), ("unwatch", 2), ("clear", 0.3), ("close_and_reopen", 0.3),
       ("retarget", 0.5), ("write", 6), ("remove", 1.5), ("special", 1)]


@pytest.mark.parametrize("seed", range(12))
def test_c_registry_delivers_what_the_python_registry_does(seed):
    rng = random.Random(seed)
    pair = Pair(rng)
    names, weights = zip(*OPS)
    for _ in range(600):
        getattr(pair, rng.choices(names, weights)[0])()
        pair.check()
    assert pair.py_log, "nothing was delivered: the test proves nothing"
    kinds = {path for _, path, _, _ in pair.py_log}
    assert any(not p.startswith(("/", "@")) for p in kinds), "no relative event path"
    assert any(p.startswith(DEEP[:20]) for p in kinds), "no deep watch fired"


def test_watch_beyond_trie_depth_fires_only_at_its_own_depth():
    """A deep watch is filed in the trie under its cut path; a change between the cut
    and its full path must not fire it (watches.py's rule, kept in C)."""
    store = CStore()
    log = []
    registry = CWatchRegistry(store)
    s = RecordingSession(log, name="s")
    registry.attach(s)
    registry.add(s, DEEP, b"t", False)
    cut = DEEP[:DEEP.index("/x%d" % (TRIE_DEPTH + 2))]
    store.write(cut, b"", (Perm("n", 0),))
    registry.fire_change(cut, (Perm("n", 0),))
    assert log == []
    store.write(DEEP + "/below", b"", (Perm("n", 0),))
    registry.fire_change(DEEP + "/below", (Perm("n", 0),))
    assert log == [("s", DEEP + "/below", b"t", watch_key(DEEP, b"t"))]


def test_guest_sees_change_only_with_read_on_node_or_parent():
    """XSA-115 in C: a guest's watch on / fires for a node it may read, or whose parent it may
    read, and not for one of another domain's it may not."""
    store = CStore()
    log = []
    registry = CWatchRegistry(store)
    guest = RecordingSession(log, domid=5, privileged=False, name="guest")
    registry.attach(guest)
    registry.add(guest, "/", b"t", False)
    store.write("/p", b"", (Perm("n", 1),))
    store.write("/p/hidden", b"", (Perm("n", 1),))
    registry.fire_change("/p/hidden", (Perm("n", 1),))
    assert log == []
    store.write("/q", b"", (Perm("n", 1), Perm("r", 5)))
    store.write("/q/child", b"", (Perm("n", 1),))
    registry.fire_change("/q/child", (Perm("n", 1),))          # the parent is readable
    registry.fire_change("/p/hidden", (Perm("n", 1),), (Perm("r", 1),))   # was readable
    assert [path for _, path, _, _ in log] == ["/q/child", "/p/hidden"]
