"""Patterns: the Python matcher against a trivial model and against xsd's C matcher."""
import importlib
import os

import pytest
from hypothesis import given, settings, strategies as st

from tests.glob_model import model_glob
from watchlib import patterns
from watchlib.patterns import Pattern, py_glob_match


def model_match(comps, parts):
    """The shared model (tests/glob_model.py) on component tuples."""
    return model_glob(as_path(comps), as_path(parts))


names = st.sampled_from(["a", "b", "c", "0"])
pattern_parts = st.lists(st.sampled_from(["a", "b", "*", "**", "a*"]), max_size=5)
path_parts = st.lists(names, max_size=6)


def as_path(parts):
    return "/" + "/".join(parts)


@settings(max_examples=400, deadline=None)
@given(pattern_parts, path_parts)
def test_python_matcher_agrees_with_the_model(pp, parts):
    assert py_glob_match(as_path(pp), as_path(parts)) == model_match(tuple(pp), tuple(parts))


@settings(max_examples=400, deadline=None)
@given(pattern_parts, path_parts)
def test_native_matcher_agrees_with_python(pp, parts):
    native = pytest.importorskip("xsd._native")
    if native.BACKEND != "cffi":
        pytest.skip("xsd._native has no C extension here")
    assert bool(native.glob_match(as_path(pp), as_path(parts))) == \
        py_glob_match(as_path(pp), as_path(parts))


@settings(max_examples=300, deadline=None)
@given(pattern_parts, path_parts)
def test_classify_match_means_at_or_below_a_selected_node(pp, parts):
    pat = Pattern(as_path(pp))
    kind = pat.classify(as_path(parts))
    below = any(model_match(tuple(pp), tuple(parts[:n])) for n in range(len(parts) + 1))
    assert (kind == "match") == below


def test_backend_is_visible():
    assert patterns.BACKEND in ("cffi", "python")
    assert patterns.BACKEND_REASON


def test_prefix_is_the_literal_head():
    assert Pattern("/local/domain/*/device").prefix == "/local/domain"
    assert Pattern("/a/**/b").prefix == "/a"
    assert Pattern("/*").prefix == "/"
    assert Pattern("/a/b").prefix == "/a/b" and Pattern("/a/b").literal
    assert Pattern("/a/x*").literal                  # "x*" is a literal component
    assert Pattern("@releaseDomain").prefix == "@releaseDomain"


def test_classify_examples():
    p = Pattern("/local/domain/*/device/vif/*/state")
    assert p.classify("/local/domain/1/device/vif/0/state") == "match"
    assert p.classify("/local/domain/1/device/vif/0/state/x") == "match"
    assert p.classify("/local/domain/1/device/vif/0") == "above"
    assert p.classify("/local/domain/1") == "above"
    assert p.classify("/local/domain/1/name") is None
    assert p.classify("/local/domain/1/device/vif/0/other") is None
    g = Pattern("/a/**/state")
    assert g.classify("/a/x/y/state") == "match"
    assert g.classify("/a") == "above"
    assert g.classify("/a/x") is None          # below a "**": not tracked (docs/watchlib.md)
    s = Pattern("@introduceDomain")
    assert s.classify("@introduceDomain") == "match"
    assert s.classify("/@introduceDomain") is None


@pytest.mark.parametrize("bad", ["", "a/b", "/a/", "/a//b", "@a/b"])
def test_bad_patterns(bad):
    with pytest.raises(ValueError):
        Pattern(bad)


def test_python_fallback_can_be_forced(monkeypatch):
    monkeypatch.setenv("WATCHLIB_MATCHER", "python")
    mod = importlib.reload(patterns)
    try:
        assert mod.BACKEND == "python"
        assert mod.Pattern("/a/*/b").classify("/a/x/b/c") == "match"
    finally:
        monkeypatch.delenv("WATCHLIB_MATCHER")
        importlib.reload(patterns)


@settings(max_examples=300, deadline=None)
@given(st.lists(pattern_parts, min_size=1, max_size=6), path_parts)
def test_py_globset_agrees_with_the_model(pps, parts):
    from watchlib.patterns import PyGlobSet
    gs = PyGlobSet()
    texts = sorted({as_path(pp) for pp in pps})
    for i, text in enumerate(texts):
        gs.add(text, i)
    want = [i for i, text in enumerate(texts) if model_match(tuple(_split(text)), tuple(parts))]
    assert gs.match(as_path(parts)) == want
    for i, text in enumerate(texts):
        assert gs.remove(text, i)
    assert gs.match(as_path(parts)) == [] and len(gs) == 0


def _split(text):
    return () if text == "/" else tuple(text[1:].split("/"))


def test_py_globset_specials():
    from watchlib.patterns import PyGlobSet
    gs = PyGlobSet()
    gs.add("@introduceDomain", 1)
    gs.add("/**", 2)
    assert gs.match("@introduceDomain") == [1]
    assert gs.match("/x") == [2]
    with pytest.raises(ValueError):
        gs.add("/**", 2)


@settings(max_examples=300, deadline=None)
@given(st.lists(pattern_parts, min_size=1, max_size=5), path_parts)
def test_daemon_watch_routing_agrees_with_classify(pps, parts):
    """Routing through the glob sets gives what Pattern.classify says, per subscription."""
    from watchlib.subscription import Subscription
    from watchlib.watches import WatchRegistry
    reg = WatchRegistry("t")
    subs = []
    for pp in pps:
        sub = Subscription(None, "/r/" + "/".join(pp) if pp else "/r", lambda e: None)
        if sub._pattern.prefix != "/r":
            continue
        reg.add(sub)
        subs.append(sub)
    if not subs:
        return
    dw = reg.by_path["/r"]
    path = "/r/" + "/".join(parts) if parts else "/r"
    got = {id(sub): above for sub, above in dw.route(path)}
    for sub in subs:
        kind = sub._pattern.classify(path)
        assert got.get(id(sub), "none") == {"match": False, "above": True, None: "none"}[kind]
    for sub in subs:
        reg.remove(sub)
    assert reg.by_path == {}


# Examples the C glob set and glob_match must answer as the Python engine does.
# Once checked at every import of watchlib.patterns; a test is where it belongs.
NATIVE_EXAMPLES = [
    ("/local/domain/*/device/**", "/local/domain/3/device", True),
    ("/local/domain/*/device/**", "/local/domain/3/device/vif/0/state", True),
    ("/local/domain/*/device/**", "/local/domain/3/devices", False),
    ("/local/domain/*/device/**", "/local/domain/device", False),
    ("/a/**/state/**", "/a/state", True),
    ("/a/**/state/**", "/a/b/c/state/x", True),
    ("/a/**/state/**", "/a/b/c/stat", False),
    ("/**", "/", True),
    ("@introduceDomain", "@introduceDomain", True),
    ("@introduceDomain", "/@introduceDomain", False),
]


def test_native_glob_set_answers_the_examples_as_the_python_engine():
    native = pytest.importorskip("xsd._native")
    if native.BACKEND != "cffi":
        pytest.skip("xsd._native has no C extension here")
    for pattern, path, want in NATIVE_EXAMPLES:
        assert bool(native.glob_match(pattern, path)) is want is py_glob_match(pattern, path)
    c_set, py_set = native.GlobSet(), patterns.PyGlobSet()
    for i, (pattern, _, _) in enumerate(NATIVE_EXAMPLES):
        c_set.add(pattern, i)
        py_set.add(pattern, i)
    for _, path, _ in NATIVE_EXAMPLES:
        assert [int(i) for i in c_set.match(path)] == py_set.match(path)
    assert c_set.remove(NATIVE_EXAMPLES[0][0], 0) and py_set.remove(NATIVE_EXAMPLES[0][0], 0)
    assert [int(i) for i in c_set.match("/local/domain/3/device")] == \
        py_set.match("/local/domain/3/device")


def test_watchlib_uses_the_c_glob_set_when_xsd_has_it():
    native = pytest.importorskip("xsd._native")
    if native.BACKEND != "cffi" or os.environ.get("WATCHLIB_MATCHER"):
        pytest.skip("no C extension here, or the Python matcher was asked for")
    assert patterns.BACKEND == "cffi" and patterns.GlobSet is native.GlobSet


def test_importing_patterns_runs_no_matching(monkeypatch):
    """The backend choice only looks at what xsd._native offers; it matches nothing."""
    native = pytest.importorskip("xsd._native")
    calls = []
    monkeypatch.setattr(native, "glob_match", lambda *a: calls.append(a) or False)
    monkeypatch.delenv("WATCHLIB_MATCHER", raising=False)
    try:
        importlib.reload(patterns)
        assert calls == []
    finally:
        monkeypatch.undo()
        importlib.reload(patterns)
