"""Watch patterns: literal paths, ``*``, ``**`` and the ``@`` specials.

A pattern is an absolute path whose components may be ``*`` (exactly one
component) or ``**`` (any number of components, zero included), or a special
name such as ``@introduceDomain``.  Any other component, ``a*`` included, is
literal.  These are the rules of xsd's native matcher (xsd/_native/trie.h).

A pattern *selects* the nodes it matches exactly.  Like a xenstore watch, a
subscription is told about a selected node and everything below it: an event
whose path is a selected node or lies below one is a *match*.  An event on a
node *above* the selected ones (within the part of the pattern before any
``**``) is passed on too, flagged ``Event.above``: it may be the removal of a
whole subtree of selected nodes (C xenstored reports an rm to the watchers
above with the removed path only), so the subscriber should re-read below it.

The daemon is asked to watch the *literal prefix*, the components before the
first wildcard; every event the daemon sends for it is then filtered here,
with xsd's C glob matcher when ``xsd._native`` imports with its C extension,
else in Python.  ``BACKEND`` says which ("cffi" or "python", the reason in
``BACKEND_REASON``); ``WATCHLIB_MATCHER=python`` forces the fallback.
"""
import logging
import os

log = logging.getLogger("watchlib")

STAR = "*"
GLOBSTAR = "**"


def _split(path: str) -> tuple:
    return () if path == "/" else tuple(path[1:].split("/"))


def _join(parts) -> str:
    return "/" + "/".join(parts)


def _closure(comps, states):
    """Add the positions reachable by letting a ``**`` match nothing."""
    out = set(states)
    stack = list(states)
    while stack:
        i = stack.pop()
        if i < len(comps) and comps[i] == GLOBSTAR and i + 1 not in out:
            out.add(i + 1)
            stack.append(i + 1)
    return out


def nfa_states(comps, parts) -> set:
    """Positions in ``comps`` reachable after matching every one of ``parts``.

    ``len(comps) in result``: the parts match the pattern exactly; any
    position below ``len(comps)``: a longer path could still match.
    """
    states = _closure(comps, {0})
    for part in parts:
        nxt = set()
        for i in states:
            if i == len(comps):
                continue
            c = comps[i]
            if c == GLOBSTAR:
                nxt.add(i)
            elif c == STAR or c == part:
                nxt.add(i + 1)
        if not nxt:
            return nxt
        states = _closure(comps, nxt)
    return states


def py_glob_match(pattern: str, path: str) -> bool:
    """Exact match of ``path`` against ``pattern`` (the trie.h rules)."""
    if pattern.startswith("@") or path.startswith("@"):
        return pattern == path
    comps = _split(pattern)
    return len(comps) in nfa_states(comps, _split(path))


class Pattern:
    """A parsed pattern.  Raises ValueError for anything not absolute or special."""

    __slots__ = ("text", "special", "components", "prefix_components", "prefix",
                 "literal", "subtree", "_subtree_comps", "_head", "_head_max")

    def __init__(self, text: str):
        if not isinstance(text, str) or not text:
            raise ValueError(f"bad watch pattern {text!r}")
        self.text = text
        self.special = text.startswith("@")
        if self.special:
            if "/" in text:
                raise ValueError(f"special names have no components: {text!r}")
            self.components = ()
            self.prefix_components = ()
            self.prefix = text
            self.literal = True
            self.subtree = text
            self._subtree_comps = ()
            self._head = ()
            self._head_max = -1
            return
        if not text.startswith("/"):
            raise ValueError(f"watch patterns are absolute paths or @names: {text!r}")
        if text != "/" and (text.endswith("/") or "//" in text):
            raise ValueError(f"empty component in pattern {text!r}")
        comps = _split(text)
        self.components = comps
        lit = 0
        while lit < len(comps) and comps[lit] not in (STAR, GLOBSTAR):
            lit += 1
        self.prefix_components = comps[:lit]
        self.prefix = _join(comps[:lit])
        self.literal = lit == len(comps)
        # "selected node or below": the pattern followed by "**".
        self.subtree = text if comps and comps[-1] == GLOBSTAR else (
            "/**" if text == "/" else text + "/**")
        self._subtree_comps = _split(self.subtree)
        cut = comps.index(GLOBSTAR) if GLOBSTAR in comps else len(comps)
        self._head = comps[:cut]
        # Paths strictly above the selected nodes, or (with "**" after the
        # head) as deep as the head.
        self._head_max = cut if cut < len(comps) else cut - 1

    def __repr__(self):
        return f"Pattern({self.text!r})"

    def matches_exactly(self, path: str) -> bool:
        """``path`` is a node this pattern selects."""
        if self.special:
            return path == self.text
        if path.startswith("@"):
            return False
        return len(self.components) in nfa_states(self.components, _split(path))

    def could_extend(self, parts) -> bool:
        """Some strict descendant of the path ``parts`` could be selected."""
        comps = self.components
        return any(i < len(comps) for i in nfa_states(comps, parts))

    def classify(self, path: str):
        """``"match"``, ``"above"`` or None for an event on ``path``."""
        if self.special or path.startswith("@"):
            return "match" if path == self.text else None
        if self.literal:
            # The daemon watch is this very path: all it reports is a match.
            return "match" if _is_at_or_below(path, self.text) else None
        if BACKEND == "cffi":
            if glob_match(self.subtree, path):
                return "match"
            parts = _split(path)
        else:
            parts = _split(path)
            sc = self._subtree_comps
            if len(sc) in nfa_states(sc, parts):
                return "match"
        return "above" if self.is_above(parts) else None

    def above_heads(self) -> list:
        """Patterns (no "**") matching exactly the paths this one has *above* its selection."""
        if self.special or self.literal:
            return []
        lo = len(self.prefix_components)
        return [_join(self._head[:k]) for k in range(lo, self._head_max + 1)]

    def is_above(self, parts) -> bool:
        if len(parts) > self._head_max:
            return False
        return all(h == STAR or h == p for h, p in zip(self._head, parts))

    def head_depth(self) -> int:
        return self._head_max


class _Node:
    __slots__ = ("children", "star", "globstar", "ids", "loop")

    def __init__(self, loop=False):
        self.children = {}
        self.star = None
        self.globstar = None     # the node reached through a "**" component
        self.ids = set()
        self.loop = loop         # this node is a "**": it may swallow any component


class PyGlobSet:
    """Many patterns, each with ids; ``match(path)`` gives the ids of every
    pattern matching ``path`` exactly, sorted.  The pure-Python counterpart of
    ``xsd._native.GlobSet`` (same API): the patterns share a trie of their
    components and a path is run through it as an NFA, so the cost grows
    with the path's depth and the live states, not with the number of
    patterns that cannot match.
    """

    def __init__(self):
        self._root = _Node()
        self._specials = {}
        self._count = 0

    def _walk(self, pattern: str, create: bool):
        node = self._root
        for comp in _split(pattern):
            if comp == GLOBSTAR:
                nxt = node.globstar
                if nxt is None and create:
                    nxt = node.globstar = _Node(loop=True)
            elif comp == STAR:
                nxt = node.star
                if nxt is None and create:
                    nxt = node.star = _Node()
            else:
                nxt = node.children.get(comp)
                if nxt is None and create:
                    nxt = node.children[comp] = _Node()
            if nxt is None:
                return None
            node = nxt
        return node

    def add(self, pattern: str, id: int) -> None:
        if pattern.startswith("@"):
            ids = self._specials.setdefault(pattern, set())
        else:
            ids = self._walk(pattern, True).ids
        if id in ids:
            raise ValueError(f"{pattern!r} already has id {id}")
        ids.add(id)
        self._count += 1

    def remove(self, pattern: str, id: int) -> bool:
        # Emptied nodes are kept: watch patterns come and go in small numbers.
        if pattern.startswith("@"):
            ids = self._specials.get(pattern, set())
        else:
            node = self._walk(pattern, False)
            ids = node.ids if node is not None else set()
        if id not in ids:
            return False
        ids.discard(id)
        self._count -= 1
        return True

    def __len__(self):
        return self._count

    @staticmethod
    def _closure(nodes):
        out = []
        seen = set()
        stack = list(nodes)
        while stack:
            n = stack.pop()
            if id(n) in seen:
                continue
            seen.add(id(n))
            out.append(n)
            if n.globstar is not None:
                stack.append(n.globstar)
        return out

    def match(self, path: str) -> list:
        if path.startswith("@"):
            return sorted(self._specials.get(path, ()))
        states = self._closure([self._root])
        for part in _split(path):
            nxt = []
            for n in states:
                c = n.children.get(part)
                if c is not None:
                    nxt.append(c)
                if n.star is not None:
                    nxt.append(n.star)
                if n.loop:
                    nxt.append(n)
            states = self._closure(nxt)
            if not states:
                return []
        ids = set()
        for n in states:
            ids |= n.ids
        return sorted(ids)


def _is_at_or_below(path: str, base: str) -> bool:
    if base == "/":
        return path.startswith("/")
    return path == base or path.startswith(base + "/")


# -- backend choice ----------------------------------------------------------

_SELF_TEST = [
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


def _load_native():
    """(glob_match, GlobSet or None) from xsd._native, checked against the Python rules."""
    from xsd import _native  # may raise ImportError
    if getattr(_native, "BACKEND", None) != "cffi":
        # xsd's own fallback is pygtrie-based: no faster than ours.
        raise ImportError(f"xsd._native backend is {getattr(_native, 'BACKEND', None)!r}")
    glob_match = getattr(_native, "glob_match")
    for pattern, path, want in _SELF_TEST:
        if bool(glob_match(pattern, path)) != want:
            raise ImportError(f"xsd._native.glob_match disagrees on {pattern!r} {path!r}")
    globset = getattr(_native, "GlobSet", None)
    if globset is not None:
        try:
            g = globset()
            for i, (pattern, _, _) in enumerate(_SELF_TEST):
                g.add(pattern, i)
            for path in {p for _, p, _ in _SELF_TEST}:
                got = {int(i) for i in g.match(path)}
                want = {i for i, (pat, _, _) in enumerate(_SELF_TEST) if py_glob_match(pat, path)}
                if got != want:
                    raise ValueError(f"GlobSet.match({path!r}) gave {got}, expected {want}")
            g.remove(_SELF_TEST[0][0], 0)
        except Exception as e:  # an API we do not understand: match one by one
            log.debug("watchlib: xsd._native.GlobSet not usable (%s)", e)
            globset = None
    return glob_match, globset


def new_globset():
    """A glob set for routing: xsd's C one when loaded, else PyGlobSet."""
    return GlobSet() if GlobSet is not None else PyGlobSet()


BACKEND = "python"
BACKEND_REASON = "WATCHLIB_MATCHER=python"
glob_match = py_glob_match
GlobSet = None
if os.environ.get("WATCHLIB_MATCHER", "").lower() != "python":
    try:
        glob_match, GlobSet = _load_native()
        BACKEND = "cffi"
        BACKEND_REASON = "xsd._native (C extension)"
    except Exception as e:   # ImportError, AttributeError, a stale build ...
        BACKEND_REASON = f"xsd._native unavailable: {e}"
        glob_match = py_glob_match
        GlobSet = None
