"""The one Python glob engine: ``*``, ``**`` and "@names" over path components.

``py_glob_match`` (one pattern) and ``PyGlobSet`` (many, matched in one
pass) are watchlib's matcher when xsd's C glob set is not loaded
(``watchlib.patterns``), xsd's pure-Python backend (``xsd._native.pytrie``
imports them) and the side the C glob set is checked against in tests/native.
Stdlib only, and nothing here chooses a backend, so both packages import it
without importing each other.

The rules are those of xsd/_native/trie.h: a key is "/" or "/"-separated
non-empty components, or an "@name" (its own namespace: it matches only the
same "@name"); anything else is ValueError, a non-str TypeError.  In a
pattern, a ``*`` component matches exactly one component, ``**`` any number
(zero included), anything else (``a*`` too) itself.  Ids are unsigned 64-bit
(OverflowError outside).
"""
import operator

STAR = "*"
GLOBSTAR = "**"
ID_MAX = (1 << 64) - 1      # ids are uint64_t in trie.h


def parse_key(path) -> tuple:
    """A key's components (``()`` for "/"), or None for an "@name"; the trie.h rules."""
    if not isinstance(path, str):
        raise TypeError("path must be str, not %s" % type(path).__name__)
    # The C backend sees the UTF-8 bytes; refuse what it cannot encode the
    # same way (UnicodeEncodeError is a ValueError).
    path.encode()
    if path[:1] == "@":
        return None
    if path[:1] != "/":
        raise ValueError("invalid path %r: must start with '/' or '@'" % (path,))
    if path == "/":
        return ()
    comps = tuple(path[1:].split("/"))
    if "" in comps:
        raise ValueError("invalid path %r: empty component" % (path,))
    return comps


def check_id(id) -> int:
    id = operator.index(id)
    if not 0 <= id <= ID_MAX:
        raise OverflowError("id %d outside 0..2**64-1" % id)
    return id


def components_of(path: str) -> tuple:
    return () if path == "/" else tuple(path[1:].split("/"))


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
    comps, parts = parse_key(pattern), parse_key(path)
    if comps is None or parts is None:
        return comps is None and parts is None and pattern == path
    return len(comps) in nfa_states(comps, parts)


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

    def _walk(self, comps, create: bool):
        node = self._root
        for comp in comps:
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

    def _ids(self, pattern: str, create: bool) -> set:
        """The id set of ``pattern`` (made when ``create``; an empty one when absent)."""
        comps = parse_key(pattern)
        if comps is None:
            if create:
                return self._specials.setdefault(pattern, set())
            return self._specials.get(pattern, set())
        node = self._walk(comps, create)
        return node.ids if node is not None else set()

    def add(self, pattern: str, id: int) -> None:
        """Register ``id`` for ``pattern``; ValueError if that pair is there already."""
        id = check_id(id)
        ids = self._ids(pattern, True)
        if id in ids:
            raise ValueError(f"({pattern!r}, {id}) is already registered")
        ids.add(id)
        self._count += 1

    def remove(self, pattern: str, id: int) -> bool:
        """Unregister ``id`` for ``pattern``; False if that pair was not there."""
        # Emptied nodes are kept: watch patterns come and go in small numbers.
        id = check_id(id)
        ids = self._ids(pattern, False)
        if id not in ids:
            return False
        ids.discard(id)
        self._count -= 1
        return True

    def __len__(self):
        return self._count

    def __repr__(self):
        return "<GlobSet python entries=%d>" % self._count

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
        """Ids of the patterns matching ``path`` exactly, each once, sorted."""
        parts = parse_key(path)
        if parts is None:
            return sorted(self._specials.get(path, ()))
        states = self._closure([self._root])
        for part in parts:
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
