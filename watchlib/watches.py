"""Which daemon watches a client holds, and which subscriptions an event reaches.

One daemon watch per literal prefix (the pattern's components before the
first wildcard), shared by every subscription under that same prefix and
reference-counted: the WATCH goes out with the first subscription, the
UNWATCH with the last.  Each daemon watch gets a token of its own
(``<client prefix>:<n>``, never reused within a client), so two subscribers
never clobber each other's watch and an event for an already-removed watch
is recognised and dropped.

Every WATCH makes the daemon send one initial event, the watched path with
the token, right after the OK (both Xen daemons and xsd).  It says nothing
about a change, so the registry swallows it: watchlib makes its own initial
events per subscription (see ``Client.watch``).

Sans-I/O and unlocked: the clients call it under their own lock.
"""
import itertools

from . import patterns


class DaemonWatch:
    """One WATCH on the daemon, and the subscriptions hanging on it.

    Routing an event costs one glob-set match for the subscriptions whose
    pattern selects the path or an ancestor of it, and one more for those
    whose pattern has it *above* the selected nodes (a set of the patterns'
    heads truncated to each depth): neither grows with the number of
    patterns that cannot match.  Subscriptions with the same pattern share
    one entry; those whose pattern is the watched path itself get everything.
    """

    __slots__ = ("path", "token", "subs", "swallow", "registered", "_literal",
                 "_groups", "_ids", "_next_id", "_match_set", "_above_set", "_above_ids")

    def __init__(self, path: str, token: str):
        self.path = path
        self.token = token
        self.subs = {}             # id(sub) -> sub
        self.swallow = False       # the next event for this token is the initial one
        self.registered = False    # the daemon said OK to the WATCH on this connection
        self._literal = {}         # id(sub) -> sub whose pattern is the prefix itself
        self._groups = {}          # pattern text -> [Pattern, {id(sub): sub}, gid]
        self._ids = {}             # gid -> pattern text
        self._next_id = 0
        self._match_set = None     # GlobSet: pattern.subtree -> gid
        self._above_set = None     # GlobSet: truncated head -> head id
        self._above_ids = {}       # truncated head text -> [head id, {gid}]

    def add(self, sub):
        self.subs[id(sub)] = sub
        pat = sub._pattern
        if pat.literal:
            self._literal[id(sub)] = sub
            return
        group = self._groups.get(pat.text)
        if group is None:
            gid = self._next_id
            self._next_id += 1
            self._groups[pat.text] = group = [pat, {}, gid]
            self._ids[gid] = pat.text
            if self._match_set is None:
                self._match_set = patterns.new_globset()
                self._above_set = patterns.new_globset()
            self._match_set.add(pat.subtree, gid)
            for head in pat.above_heads():
                entry = self._above_ids.get(head)
                if entry is None:
                    entry = self._above_ids[head] = [self._next_id, set()]
                    self._next_id += 1
                    self._above_set.add(head, entry[0])
                    self._ids[entry[0]] = head
                entry[1].add(gid)
        group[1][id(sub)] = sub

    def remove(self, sub):
        self.subs.pop(id(sub), None)
        if self._literal.pop(id(sub), None) is not None:
            return
        pat = sub._pattern
        group = self._groups.get(pat.text)
        if group is None:
            return
        group[1].pop(id(sub), None)
        if group[1]:
            return
        gid = group[2]
        del self._groups[pat.text]
        del self._ids[gid]
        self._match_set.remove(pat.subtree, gid)
        for head in pat.above_heads():
            entry = self._above_ids[head]
            entry[1].discard(gid)
            if not entry[1]:
                self._above_set.remove(head, entry[0])
                del self._above_ids[head]
                del self._ids[entry[0]]

    def route(self, path: str):
        """``[(sub, above)]`` for an event on ``path``, in subscription order."""
        out = [(sub, False) for sub in self._literal.values()]
        if self._groups:
            groups = self._groups
            ids = self._ids
            matched = set()
            for gid in self._match_set.match(path):
                text = ids[int(gid)]
                matched.add(text)
                out.extend((sub, False) for sub in groups[text][1].values())
            for hid in self._above_set.match(path):
                for gid in self._above_ids[ids[int(hid)]][1]:
                    text = ids[gid]
                    if text not in matched:
                        matched.add(text)
                        out.extend((sub, True) for sub in groups[text][1].values())
        if len(out) > 1:
            out.sort(key=lambda r: r[0]._seq)
        return out


class WatchRegistry:
    def __init__(self, token_prefix: str):
        self.token_prefix = token_prefix
        self._counter = itertools.count(1)
        self.by_path = {}
        self.by_token = {}

    def new_token(self) -> str:
        return f"{self.token_prefix}:{next(self._counter)}"

    def add(self, sub):
        """Attach ``sub``; returns ``(daemon_watch, created)``."""
        prefix = sub._pattern.prefix
        dw = self.by_path.get(prefix)
        created = dw is None
        if created:
            dw = DaemonWatch(prefix, self.new_token())
            self.by_path[prefix] = dw
            self.by_token[dw.token] = dw
        dw.add(sub)
        sub._watch = dw
        return dw, created

    def remove(self, sub):
        """Detach ``sub``; returns the daemon watch if it is now unused (and gone)."""
        dw = sub._watch
        if dw is None:
            return None
        sub._watch = None
        dw.remove(sub)
        if dw.subs:
            return None
        self.by_path.pop(dw.path, None)
        self.by_token.pop(dw.token, None)
        return dw

    def watches(self):
        return list(self.by_path.values())

    def disconnected(self):
        for dw in self.by_path.values():
            dw.registered = False
            dw.swallow = False

    def route(self, path: str, token: str):
        """Subscriptions an event reaches, as ``[(sub, above)]``; None for an unknown token."""
        dw = self.by_token.get(token)
        if dw is None:
            return None
        if dw.swallow:
            dw.swallow = False
            if path == dw.path:
                return []
        return dw.route(path)
