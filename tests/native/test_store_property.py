"""The C node store (xsd/_native/store.c) against the Python store as oracle.

Random operation sequences (hypothesis, stateful) go through
``xsd._native.store.NodeStore`` (C) and ``xsd.nodestore.PyNodeStore``
(what xsd/ops.py does to xsd/store.py today) and must give identical results:
return values, errors, every node's value, permissions, generation and
children order, removal order, owner counts and a clean ``check()`` on both.
Paths come from a small alphabet so that operations collide; values vary in
length so nodes outgrow their blocks (and directories move with children);
one rule fills a directory wide enough to grow the index several times, one
builds a chain deeper than any recursion would survive.

The primitives the daemon's core needs go through the same comparison: a
transaction commit's put/move_last, replay's load and next_gen, the journal's
change log (track/take_changes: same paths, kinds and first-change order),
the whole-tree dump (byte for byte) and its parsed nodes(), and the memory
quota's bytes_of for every owner after every step.
"""
import errno
import os

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from xenstore_protocol.paths import join
from xenstore_protocol.perms import Perm
from xsd.nodestore import PyNodeStore

if os.environ.get("XSD_NATIVE", "").strip().lower() == "python":
    pytest.skip("XSD_NATIVE=python: the C store is not built for this run", allow_module_level=True)
from xsd._native._xsd_native import ffi, lib     # noqa: E402  (must import: no silent skip)
from xsd._native.store import NodeStore           # noqa: E402

NAMES = ["a", "b", "c", "local", "0", "1"]
DOMIDS = [0, 1, 2, 5, 65535, 4294967295]

paths = st.lists(st.sampled_from(NAMES), min_size=0, max_size=4).map(lambda c: "/" + "/".join(c))
nonroot_paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=4).map(lambda c: "/" + "/".join(c))
values = st.one_of(st.binary(max_size=40), st.binary(min_size=100, max_size=300))
perm = st.builds(Perm, st.sampled_from("nrwb"), st.sampled_from(DOMIDS))
perm_lists = st.lists(perm, min_size=1, max_size=3).map(tuple)


def outcome(fn, *args):
    """The result of a store call, or the type of what it raised."""
    try:
        return ("ok", fn(*args))
    except (KeyError, ValueError) as e:
        return ("raised", type(e))


def node_fields(node):
    return None if node is None else (node.value, node.perms, list(node.children), node.gen)


class StoreMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.c = NodeStore()
        self.c.keep_listings(1)     # every listing kept: each change must drop it
        self.py = PyNodeStore()

    def both(self, method, *args):
        got_c = outcome(getattr(self.c, method), *args)
        got_py = outcome(getattr(self.py, method), *args)
        if method in ("rm", "take_changes") and got_c[0] == got_py[0] == "ok":
            got_c, got_py = list(got_c[1].items()), list(got_py[1].items())   # order matters
        assert got_c == got_py, (method, args)
        return got_py

    @rule(path=paths, value=values, perms=perm_lists)
    def write(self, path, value, perms):
        self.both("write", path, value, perms)

    @rule(path=paths, value=values, domid=st.sampled_from(DOMIDS))
    def write_inheriting(self, path, value, domid):
        """As ops._create for an unprivileged writer: the closest node's perms, new owner."""
        kind, inherited = self.both("missing", path)
        assert kind == "ok"
        count, top_perms = inherited
        perms = (Perm(top_perms[0].kind, domid),) + top_perms[1:]
        self.both("write", path, value if count == 0 else value, perms)

    @rule(path=paths, perms=perm_lists)
    def set_perms(self, path, perms):
        self.both("set_perms", path, perms)

    @rule(path=paths)
    def rm(self, path):
        self.both("rm", path)

    @rule()
    def stamp(self):
        self.both("stamp")

    @rule(path=paths, value=values, perms=perm_lists)
    def put(self, path, value, perms):
        self.both("put", path, value, perms)

    @rule(path=paths, value=values)
    def set_value(self, path, value):
        self.both("set_value", path, value)

    @rule(path=paths)
    def move_last(self, path):
        self.both("move_last", path)

    @rule(path=paths, value=values, perms=perm_lists, gen=st.integers(0, 2**64 - 1))
    def load(self, path, value, perms, gen):
        """Replay's load; the generation kept below the counter so check() holds."""
        gen %= self.py.next_gen
        self.both("load", path, value, perms, gen)

    @rule(ahead=st.integers(0, 1000))
    def set_next_gen(self, ahead):
        gen = self.py.next_gen + ahead
        self.c.next_gen = self.py.next_gen = gen
        assert self.c.next_gen == self.py.next_gen == gen

    @rule(on=st.booleans())
    def track(self, on):
        self.both("track", on)

    @rule()
    def take_changes(self):
        self.both("take_changes")

    @rule()
    def dump(self):
        assert self.c.dump() == self.py.dump()
        assert list(self.c.nodes()) == list(self.py.nodes())
        assert list(self.c.nodes(children=False)) == list(self.py.nodes(children=False))

    @rule(domid=st.sampled_from(DOMIDS))
    def naming(self, domid):
        """A release's scan: the nodes naming domid, owned or not, in pre-order."""
        assert self.c.naming(domid) == self.py.naming(domid)

    @rule()
    def snapshot_round_trip(self):
        """A snapshot as A2's writer takes it: pre-order records loaded into a fresh store
        give the same tree, children order, counters and bytes."""
        fresh = NodeStore()
        for path, value, perms, gen, _ in self.c.nodes(children=False):
            fresh.load(path, value, perms, gen)
        fresh.next_gen = self.c.next_gen
        assert fresh.dump() == self.c.dump() and fresh.check() == []
        for domid in DOMIDS:
            assert (fresh.owned_by(domid), fresh.bytes_of(domid)) == (
                self.c.owned_by(domid), self.c.bytes_of(domid))

    @rule(path=paths)
    def read(self, path):
        assert node_fields(self.c.get(path)) == node_fields(self.py.get(path))
        bare_c, bare_py = self.c.get(path, children=False), self.py.get(path, children=False)
        assert (bare_c is None) == (bare_py is None)
        if bare_c is not None:
            assert bare_c.children is None and bare_py.children is None
            assert (bare_c.value, bare_c.perms, bare_c.gen) == (bare_py.value, bare_py.perms,
                                                                bare_py.gen)
        self.both("children_bytes", path)
        self.both("missing", path)

    @rule(parent=paths, count=st.integers(20, 120), value=st.binary(max_size=8))
    def fill_directory(self, parent, count, value):
        for i in range(count):
            self.both("write", join(parent, "w%d" % i), value, (Perm("n", 1),))

    @rule(parent=paths, depth=st.integers(50, 300))
    def deep_chain(self, parent, depth):
        path = parent + "/d" * depth if parent != "/" else "/d" * depth
        self.both("write", path, b"deep", (Perm("r", 2),))

    @invariant()
    def same_tree(self):
        nodes = self.py.store.nodes
        assert len(self.c) == len(nodes)
        for path in nodes:
            assert node_fields(self.c.get(path)) == node_fields(self.py.get(path)), path
        for domid in DOMIDS:
            assert self.c.owned_by(domid) == self.py.owned_by(domid), domid
            assert self.c.bytes_of(domid) == self.py.bytes_of(domid), domid
        assert self.c.next_gen == self.py.next_gen
        assert self.c.check() == [] and self.py.check() == []


StoreMachine.TestCase.settings = settings(
    deadline=None, max_examples=60, stateful_step_count=30,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TestStoreAgainstPythonStore = StoreMachine.TestCase


# -- the C boundary itself: what the wrapper never sends ----------------------

@pytest.fixture
def handle():
    h = lib.xsd_store_new()
    yield h
    lib.xsd_store_free(h)


def count(h):
    return lib.xsd_store_count(h)


@pytest.mark.parametrize("bad", [b"", b"a", b"a/b", b"//", b"/a/", b"/a//b", b"//a", b"/a\0b"])
def test_bad_paths_are_einval_and_change_nothing(handle, bad):
    view = ffi.new("struct xsd_node_view *")
    assert lib.xsd_store_write(handle, bad, len(bad), b"v", 1, b"n0\0", 3) == -errno.EINVAL
    assert lib.xsd_store_get(handle, bad, len(bad), view) == -errno.EINVAL
    assert lib.xsd_store_rm(handle, bad, len(bad)) == -errno.EINVAL
    assert count(handle) == 1 and lib.xsd_store_check(handle) == 0


@pytest.mark.parametrize("perms", [b"", b"n0", b"x0\0", b"n\0", b"n4294967296\0", b"n0\0r\0", b"n-1\0",
                                   b"n0\0\0"])
def test_bad_permissions_are_einval_and_change_nothing(handle, perms):
    assert lib.xsd_store_write(handle, b"/a/b", 4, b"v", 1, perms, len(perms)) == -errno.EINVAL
    assert lib.xsd_store_set_perms(handle, b"/", 1, perms, len(perms)) == -errno.EINVAL
    assert count(handle) == 1 and lib.xsd_store_stamp(handle) == 1   # no generation spent


def test_root_cannot_be_removed_and_missing_nodes_are_enoent(handle):
    assert lib.xsd_store_rm(handle, b"/", 1) == -errno.EINVAL
    assert lib.xsd_store_rm(handle, b"/nope", 5) == -errno.ENOENT
    assert lib.xsd_store_set_perms(handle, b"/nope", 5, b"n0\0", 3) == -errno.ENOENT
    assert lib.xsd_store_children(handle, b"/nope", 5, ffi.NULL, 0) == -errno.ENOENT


def test_oversized_value_is_e2big(handle):
    big = b"x" * 65536
    assert lib.xsd_store_write(handle, b"/a", 2, big, len(big), b"n0\0", 3) == -errno.E2BIG
    assert count(handle) == 1


def test_children_listing_reports_the_size_it_needs(handle):
    for name in (b"/alpha", b"/beta"):
        assert lib.xsd_store_write(handle, name, len(name), b"", 0, b"n0\0", 3) == 1
    small = ffi.new("char[]", 4)
    assert lib.xsd_store_children(handle, b"/", 1, small, 4) == len(b"alpha\0beta\0")


def test_rm_of_a_wide_deep_subtree_frees_everything(handle):
    for i in range(2000):
        path = b"/top/%d/x/y" % (i % 50) if i % 2 else b"/top/w%d" % i
        lib.xsd_store_write(handle, path, len(path), b"v" * 32, 32, b"n3\0", 3)
    deep = b"/top" + b"/d" * 5000           # far deeper than C recursion could go
    assert lib.xsd_store_write(handle, deep, len(deep), b"", 0, b"n3\0", 3) == 5000
    assert lib.xsd_store_check(handle) == 0
    # /top, 1000 leaves w<even>, 25 of /top/<odd>/x/y (3 nodes each), the chain
    assert count(handle) == 1 + 1 + 1000 + 75 + 5000
    assert lib.xsd_store_rm(handle, b"/top", 4) == 1 + 1000 + 75 + 5000
    st_ = ffi.new("struct xsd_store_stats *")
    lib.xsd_store_stats(handle, st_)
    assert st_.nodes == 1 and lib.xsd_store_owned_by(handle, 3) == 0
    assert lib.xsd_store_check(handle) == 0


def test_wrapper_turns_c_errors_into_python_ones():
    s = NodeStore()
    with pytest.raises(ValueError):
        s.write("/a//b", b"", (Perm("n", 0),))
    with pytest.raises(ValueError):
        s.write("/a", b"", (Perm("n", 1 << 32),))          # domid out of range: C refuses it
    with pytest.raises(ValueError):
        s.write("/a", b"x" * 65536, (Perm("n", 0),))
    with pytest.raises(KeyError):
        s.rm("/missing")
    with pytest.raises(ValueError):
        s.rm("/")
    with pytest.raises(KeyError):
        s.set_perms("/missing", (Perm("r", 1),))
    with pytest.raises(KeyError):
        s.children_bytes("/missing")
    assert s.get("/missing") is None and len(s) == 1 and s.check() == []
    assert s.stamp() == 1                                 # nothing above spent a generation


@pytest.mark.parametrize("bad", [b"", b"a", b"/a/", b"/a//b", b"/a\0b"])
def test_new_calls_refuse_bad_paths_and_change_nothing(handle, bad):
    lib.xsd_store_track(handle, 1)
    before = lib.xsd_store_dump(handle, ffi.NULL, 0)
    assert lib.xsd_store_put(handle, bad, len(bad), b"v", 1, b"n0\0", 3) == -errno.EINVAL
    assert lib.xsd_store_load(handle, bad, len(bad), b"v", 1, b"n0\0", 3, 0) == -errno.EINVAL
    assert lib.xsd_store_move_last(handle, bad, len(bad)) == -errno.EINVAL
    assert lib.xsd_store_put(handle, b"/a", 2, b"v", 1, b"n0", 2) == -errno.EINVAL   # perms
    assert lib.xsd_store_put(handle, b"/x/y", 4, b"", 0, b"n0\0", 3) == -errno.ENOENT
    assert lib.xsd_store_load(handle, b"/x/y", 4, b"", 0, b"n0\0", 3, 0) == -errno.ENOENT
    assert lib.xsd_store_move_last(handle, b"/", 1) == -errno.EINVAL
    assert lib.xsd_store_changes(handle, ffi.NULL, 0) == 0          # nothing recorded
    assert lib.xsd_store_dump(handle, ffi.NULL, 0) == before
    assert count(handle) == 1 and lib.xsd_store_stamp(handle) == 1 and lib.xsd_store_check(handle) == 0


def test_wrapper_listings_grow_past_their_first_buffer():
    """A change log, dump and removal far bigger than the wrapper's 4 KiB buffer."""
    c, py = NodeStore(), PyNodeStore()
    deep = "/d" * 1500
    for s in (c, py):
        s.track(True)
        assert s.write(deep, b"v" * 100, (Perm("r", 4),)) == 1500
        s.write("/w/x", b"", (Perm("n", 4),))
    assert list(c.take_changes().items()) == list(py.take_changes().items())
    assert c.take_changes() == {} and c.dump() == py.dump()
    nodes = list(c.nodes())
    assert nodes == list(py.nodes()) and len(nodes) == len(c) == 1503
    assert nodes[0][0] == "/" and nodes[0][4] == ("d", "w") and nodes[-1][0] == "/w/x"
    assert c.bytes_of(4) == py.bytes_of(4) > 1500 * 1500
    assert list(c.rm("/d").items()) == list(py.rm("/d").items())
    assert list(c.take_changes().items()) == list(py.take_changes().items())
    assert c.bytes_of(4) == py.bytes_of(4) and c.check() == [] and py.check() == []


def test_handle_is_the_live_store():
    s = NodeStore()
    s.write("/a", b"x", (Perm("n", 0),))
    assert lib.xsd_store_count(s.handle) == 2


def test_get_of_a_value_bigger_than_the_wrapper_buffer():
    s = NodeStore()
    big = bytes(range(256)) * 40                          # 10,240 bytes, past the 4 KiB buffer
    s.write("/big", big, (Perm("b", 3), Perm("r", 4)))
    for children in (True, False):
        node = s.get("/big", children)
        assert node.value == big and node.perms == (("b", 3), ("r", 4)) and node.gen == 2
    assert s.get("/", False).value == b""                 # and the small path after it
