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
``BACKEND_REASON``); ``WATCHLIB_MATCHER=python`` forces the fallback.  The Python engine is ``watchlib.globs``.
"""
import os

from .globs import GLOBSTAR, STAR, PyGlobSet, components_of, nfa_states, py_glob_match

__all__ = ["BACKEND", "BACKEND_REASON", "GlobSet", "Pattern", "PyGlobSet", "glob_match",
           "new_globset", "nfa_states", "py_glob_match"]


def _join(parts) -> str:
    return "/" + "/".join(parts)


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
        comps = components_of(text)
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
        self._subtree_comps = components_of(self.subtree)
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
        return len(self.components) in nfa_states(self.components, components_of(path))

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
            parts = components_of(path)
        else:
            parts = components_of(path)
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


def _is_at_or_below(path: str, base: str) -> bool:
    if base == "/":
        return path.startswith("/")
    return path == base or path.startswith(base + "/")


# -- backend choice ----------------------------------------------------------

def _load_native():
    """(glob_match, GlobSet) from xsd._native's C extension.

    Its agreement with the Python engine above is checked by the tests
    (tests/watchlib/test_patterns.py, tests/native/test_trie_property.py),
    not at every import.
    """
    from xsd import _native  # may raise ImportError
    if getattr(_native, "BACKEND", None) != "cffi":
        # xsd's own fallback is this module's engine: nothing to gain.
        raise ImportError(f"xsd._native backend is {getattr(_native, 'BACKEND', None)!r}")
    return _native.glob_match, _native.GlobSet


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
