"""WatchTrie and GlobSet, C and pygtrie backends, against a naive model.

Random add / remove / match sequences (hypothesis) must give identical
answers from the C backend, the pygtrie backend and a model that is a plain
list of (path, id) pairs with string-prefix ancestor logic. Globs are checked
against a dynamic-programming table (tests/glob_model.py), unrelated to both
implementations; the Python glob set and glob_match are watchlib's engine
(watchlib.globs, which xsd._native.pytrie imports), so the C glob set is
checked side by side with it.

The C backend is imported directly (not through BACKEND) so both are always
tested; if it cannot be imported the tests fail, unless XSD_NATIVE=python
asked for the fallback alone (test_backend.py has the same rule).
"""
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize,
                                 invariant, rule)

from tests.glob_model import is_special, model_glob
from xsd._native import MATCH_ANCESTORS, MATCH_DESCENDANTS, pytrie

if os.environ.get("XSD_NATIVE", "").strip().lower() == "python":
    ctrie = None
else:
    from xsd._native import trie as ctrie   # must import: no silent skip

BACKENDS = [pytrie] + ([ctrie] if ctrie is not None else [])
BACKEND_IDS = [b.__name__.rsplit(".", 1)[1] for b in BACKENDS]
ALL = MATCH_ANCESTORS | MATCH_DESCENDANTS
ID_MAX = 2 ** 64 - 1

SETTINGS = settings(deadline=None, max_examples=150,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


# ---- the model ----------------------------------------------------------

def valid(path):
    if path.startswith("@"):
        return True
    if not path.startswith("/"):
        return False
    return path == "/" or "" not in path[1:].split("/")


def anc_or_self(a, b):
    """Is tree path a an ancestor of tree path b, or b itself?"""
    return a == "/" or b == a or b.startswith(a + "/")


class Model:
    """A list of (path, id) pairs; every query is a linear scan."""

    def __init__(self):
        self.pairs = []

    def add(self, path, id):
        if (path, id) in self.pairs:
            return False
        self.pairs.append((path, id))
        return True

    def remove(self, path, id):
        if (path, id) not in self.pairs:
            return False
        self.pairs.remove((path, id))
        return True

    def match(self, path, flags):
        out = set()
        for p, i in self.pairs:
            if is_special(path) or is_special(p):
                if flags & MATCH_ANCESTORS and p == path:
                    out.add(i)
            elif flags & MATCH_ANCESTORS and anc_or_self(p, path):
                out.add(i)
            elif flags & MATCH_DESCENDANTS and p != path and anc_or_self(path, p):
                out.add(i)
        return sorted(out)


# ---- strategies ---------------------------------------------------------

COMPONENTS = ["a", "b", "local", "domain", "0", "1", "@x", "a b", "x" * 300]
SPECIALS = ["@introduceDomain", "@releaseDomain", "@x", "@"]
DEEP = "/d" * 1500          # 1500 levels, 3000 bytes


def tree_path(comps):
    return "/" + "/".join(comps)


short_paths = st.lists(st.sampled_from(COMPONENTS), min_size=0,
                       max_size=5).map(tree_path)
deep_paths = st.tuples(st.integers(1440, 1500),
                       st.lists(st.sampled_from(COMPONENTS[:3]), max_size=2)
                       ).map(lambda t: DEEP[:2 * t[0]] +
                             ("/" + "/".join(t[1]) if t[1] else ""))
long_paths = st.sampled_from(["/" + "k" * 3071, "/a/" + "k" * 3000,
                              "/a/" + "k" * 3000 + "/b"])
paths = st.one_of(short_paths, short_paths, short_paths,
                  st.sampled_from(SPECIALS + ["/@introduceDomain"]),
                  deep_paths, long_paths)
ids = st.one_of(st.integers(0, 5), st.sampled_from([ID_MAX, 2 ** 63, 2 ** 32]))
flags = st.sampled_from([MATCH_ANCESTORS, MATCH_DESCENDANTS, ALL, 0])


# ---- WatchTrie ------------------------------------------------------------

class TrieMachine(RuleBasedStateMachine):
    """Every backend and the model see the same operations."""

    @initialize()
    def setup(self):
        self.model = Model()
        self.tries = [b.WatchTrie() for b in BACKENDS]

    @rule(path=paths, id=ids)
    def add(self, path, id):
        fresh = self.model.add(path, id)
        for t in self.tries:
            if fresh:
                t.add(path, id)
            else:   # documented: a repeated (path, id) is ValueError
                with pytest.raises(ValueError):
                    t.add(path, id)

    @rule(path=paths, id=ids)
    def remove(self, path, id):
        # Often a pair that was never added: must answer False, change nothing.
        want = self.model.remove(path, id)
        for t in self.tries:
            assert t.remove(path, id) is want

    @rule(data=st.data(), flags=flags)
    def remove_existing(self, data, flags):
        if not self.model.pairs:
            return
        path, id = data.draw(st.sampled_from(self.model.pairs))
        self.model.remove(path, id)
        for t in self.tries:
            assert t.remove(path, id) is True

    @rule(path=paths, flags=flags)
    def match(self, path, flags):
        want = self.model.match(path, flags)
        for t in self.tries:
            assert sorted(t.match(path, flags)) == want, (type(t), path, flags)

    @rule(data=st.data(), flags=flags)
    def match_registered_path(self, data, flags):
        if not self.model.pairs:
            return
        path, _ = data.draw(st.sampled_from(self.model.pairs))
        want = self.model.match(path, flags)
        for t in self.tries:
            assert sorted(t.match(path, flags)) == want

    @invariant()
    def same_length(self):
        if hasattr(self, "model"):
            for t in self.tries:
                assert len(t) == len(self.model.pairs)


TrieMachine.TestCase.settings = settings(
    SETTINGS, max_examples=120, stateful_step_count=40)
test_trie_against_model = TrieMachine.TestCase


@pytest.fixture(params=BACKENDS, ids=BACKEND_IDS)
def backend(request):
    return request.param


def test_root_watch_fires_for_every_tree_path_but_no_special(backend):
    t = backend.WatchTrie()
    t.add("/", 1)
    assert t.match("/", MATCH_ANCESTORS) == [1]
    assert t.match("/a/b/c", MATCH_ANCESTORS) == [1]
    assert t.match(DEEP, MATCH_ANCESTORS) == [1]
    assert t.match("@introduceDomain", MATCH_ANCESTORS) == []
    assert t.match("/", MATCH_DESCENDANTS) == []


def test_specials_are_a_separate_namespace(backend):
    t = backend.WatchTrie()
    t.add("@introduceDomain", 1)
    t.add("/@introduceDomain", 2)
    t.add("/", 3)
    assert t.match("@introduceDomain", MATCH_ANCESTORS) == [1]
    assert t.match("@introduceDomain", ALL) == [1]
    assert t.match("@introduceDomain", MATCH_DESCENDANTS) == []
    assert t.match("/@introduceDomain", MATCH_ANCESTORS) == [2, 3]
    assert t.match("/", MATCH_DESCENDANTS) == [2]
    assert t.match("@releaseDomain", ALL) == []


def test_deep_paths_1536_levels(backend):
    t = backend.WatchTrie()
    deep = "/x" * 1536      # 3072 bytes, xenstore's longest absolute path
    t.add(deep, 1)
    t.add(deep[:2 * 768], 2)
    t.add("/x", 3)
    assert sorted(t.match(deep, MATCH_ANCESTORS)) == [1, 2, 3]
    assert sorted(t.match("/x", MATCH_DESCENDANTS)) == [1, 2]
    assert sorted(t.match(deep[:2 * 1000], MATCH_DESCENDANTS)) == [1]
    assert t.remove(deep, 1)
    assert sorted(t.match("/", MATCH_DESCENDANTS)) == [2, 3]


def test_long_components(backend):
    t = backend.WatchTrie()
    long = "/" + "c" * 3071
    t.add(long, 1)
    t.add(long + "/x", 2)
    assert t.match(long + "/x/y", MATCH_ANCESTORS) == [1, 2]
    assert t.match("/" + "c" * 3070, MATCH_ANCESTORS) == []
    assert t.match(long, MATCH_DESCENDANTS) == [2]


def test_removing_what_was_never_added(backend):
    t = backend.WatchTrie()
    assert t.remove("/a", 1) is False
    assert t.remove("@introduceDomain", 1) is False
    t.add("/a/b", 1)
    assert t.remove("/a", 1) is False        # the path exists only as a prefix
    assert t.remove("/a/b", 2) is False
    assert t.remove("/a/b/c", 1) is False
    assert len(t) == 1
    assert t.remove("/a/b", 1) is True
    assert t.remove("/a/b", 1) is False
    assert len(t) == 0


def test_duplicate_add_is_value_error_and_changes_nothing(backend):
    t = backend.WatchTrie()
    t.add("/a", 1)
    with pytest.raises(ValueError):
        t.add("/a", 1)
    assert len(t) == 1
    t.add("/a/b", 1)                         # same id elsewhere: allowed
    assert t.match("/a/b", MATCH_ANCESTORS) == [1]   # each id once
    assert t.match("/", MATCH_DESCENDANTS) == [1]


def test_many_results_grow_the_buffer(backend):
    t = backend.WatchTrie()
    for i in range(5000):
        t.add("/local/domain/%d" % (i % 700), i)
    assert t.match("/local", MATCH_DESCENDANTS) == list(range(5000))
    assert t.match("/local/domain/3", ALL) == list(range(3, 5000, 700))
    assert t.match("/local", MATCH_DESCENDANTS) == list(range(5000))


BAD_PATHS = ["", "a", "a/b", "//", "/a/", "/a//b", "//a", " /a", "\udc80"]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_invalid_paths_are_value_errors(backend, path):
    t = backend.WatchTrie()
    with pytest.raises(ValueError):
        t.add(path, 1)
    with pytest.raises(ValueError):
        t.remove(path, 1)
    with pytest.raises(ValueError):
        t.match(path, MATCH_ANCESTORS)
    with pytest.raises(ValueError):
        backend.glob_match(path, "/")
    with pytest.raises(ValueError):
        backend.glob_match("/", path)
    g = backend.GlobSet()
    with pytest.raises(ValueError):
        g.add(path, 1)
    with pytest.raises(ValueError):
        g.match(path)
    assert len(t) == 0 and len(g) == 0


def test_unknown_flags_are_value_errors(backend):
    t = backend.WatchTrie()
    with pytest.raises(ValueError):
        t.match("/", 4)
    assert t.match("/", 0) == []


def test_ids_are_unsigned_64_bit(backend):
    t = backend.WatchTrie()
    t.add("/a", 0)
    t.add("/a", ID_MAX)
    assert t.match("/a", MATCH_ANCESTORS) == [0, ID_MAX]
    with pytest.raises(OverflowError):
        t.add("/a", ID_MAX + 1)
    with pytest.raises(OverflowError):
        t.add("/a", -1)


@SETTINGS
@given(st.text(alphabet="/@ab\0é", max_size=12), ids)
def test_any_text_is_valid_or_value_error_alike(path, id):
    outcomes = []
    for b in BACKENDS:
        t = b.WatchTrie()
        try:
            t.add(path, id)
            outcomes.append(("ok", t.match(path, ALL)))
        except ValueError:
            outcomes.append(("ValueError", None))
    assert all(o == outcomes[0] for o in outcomes)
    assert (outcomes[0][0] == "ok") == valid(path)


# ---- globs -----------------------------------------------------------------

glob_patterns = st.one_of(
    st.lists(st.sampled_from(["a", "b", "*", "**", "a*"]), max_size=6
             ).map(tree_path),
    st.sampled_from(["@releaseDomain", "@introduceDomain", "/**", "/"]))
glob_paths = st.one_of(
    st.lists(st.sampled_from(["a", "b", "c", "*", "a*"]), max_size=7
             ).map(tree_path),
    st.sampled_from(["@releaseDomain", "@introduceDomain", "/@releaseDomain"]))


@SETTINGS
@given(glob_patterns, glob_paths)
def test_glob_match_against_model(pattern, path):
    want = model_glob(pattern, path)
    for b in BACKENDS:
        assert b.glob_match(pattern, path) is want, (b.__name__, pattern, path)


@pytest.mark.parametrize("pattern,path,want", [
    ("/local/domain/*/device", "/local/domain/3/device", True),
    ("/local/domain/*/device", "/local/domain/device", False),
    ("/local/domain/**/state", "/local/domain/state", True),
    ("/local/domain/**/state", "/local/domain/3/device/vif/0/state", True),
    ("/**", "/", True),
    ("/*", "/", False),
    ("/a*", "/ab", False),
    ("/**", "@releaseDomain", False),
    ("@releaseDomain", "@releaseDomain", True),
    ("/d/**/d", DEEP, True),
])
def test_glob_examples_from_trie_h(backend, pattern, path, want):
    assert backend.glob_match(pattern, path) is want
    assert model_glob(pattern, path) is want


class GlobMachine(RuleBasedStateMachine):
    """GlobSet.match(path) == ids of the registered patterns that match."""

    @initialize()
    def setup(self):
        self.pairs = []
        self.sets = [b.GlobSet() for b in BACKENDS]

    @rule(pattern=glob_patterns, id=st.integers(0, 4))
    def add(self, pattern, id):
        fresh = (pattern, id) not in self.pairs
        if fresh:
            self.pairs.append((pattern, id))
        for g in self.sets:
            if fresh:
                g.add(pattern, id)
            else:
                with pytest.raises(ValueError):
                    g.add(pattern, id)

    @rule(pattern=glob_patterns, id=st.integers(0, 4))
    def remove(self, pattern, id):
        want = (pattern, id) in self.pairs
        if want:
            self.pairs.remove((pattern, id))
        for g in self.sets:
            assert g.remove(pattern, id) is want

    @rule(path=glob_paths)
    def match(self, path):
        want = sorted({i for p, i in self.pairs if model_glob(p, path)})
        for g in self.sets:
            assert sorted(g.match(path)) == want, (type(g), path, self.pairs)

    @invariant()
    def same_length(self):
        if hasattr(self, "pairs"):
            for g in self.sets:
                assert len(g) == len(self.pairs)


GlobMachine.TestCase.settings = settings(
    SETTINGS, max_examples=100, stateful_step_count=40)
test_globset_against_model = GlobMachine.TestCase


def test_globset_many_matches_grow_the_buffer(backend):
    g = backend.GlobSet()
    for i in range(300):
        g.add("/**", i)
        g.add("/a/**", 1000 + i)
    assert g.match("/a/b") == list(range(300)) + list(range(1000, 1300))


@pytest.mark.skipif(ctrie is None, reason="XSD_NATIVE=python")
def test_c_memory_returns_to_empty_after_removing_everything():
    t = ctrie.WatchTrie()
    empty = t.stats()
    for d in range(200):
        for v in range(3):
            t.add("/local/domain/%d/device/vif/%d/state" % (d, v), d * 10 + v)
    full = t.stats()
    assert full["entries"] == 600 and full["bytes"] > empty["bytes"]
    for d in range(200):
        for v in range(3):
            assert t.remove("/local/domain/%d/device/vif/%d/state" % (d, v),
                            d * 10 + v)
    assert t.stats() == empty
