"""Guests' watches, as the journal has them (WATCH / UNWATCH entries, the whole set in META)."""
from .journal import UNWATCH, WATCH


class GuestWatches:
    """The watches of guest domains, as the journal has them.

    A guest's ring outlives a crash of the daemon, and the guest's xenbus
    driver does not know to register its watches again; so they are journaled
    (WATCH / UNWATCH entries per change, the whole set in snapshots) and given
    back to the guest's session when its ring is re-attached (guest.py).
    Socket clients lose their connection in a crash and re-register by
    themselves, so theirs are not kept.  Changes come from the guest's own
    WATCH / UNWATCH / RESET_WATCHES, from a dropped or reset connection, and
    from the domain's release; never from the daemon shutting down (the
    core's listener calls: ``Daemon.watch_added`` and the rest).
    """

    def __init__(self):
        self.by_domid = {}        # domid -> {(path, token): relative}, in registration order
        self.pending = []         # (kind, domid, path, token, relative) not yet journaled

    def added(self, domid: int, path: str, token: bytes, relative: bool) -> None:
        watches = self.by_domid.setdefault(domid, {})
        if (path, token) not in watches:
            watches[(path, token)] = relative
            self.pending.append((WATCH, domid, path, token, relative))

    def removed(self, domid: int, path: str, token: bytes) -> None:
        watches = self.by_domid.get(domid)
        if watches is not None and watches.pop((path, token), None) is not None:
            self.pending.append((UNWATCH, domid, path, token, False))
            if not watches:
                del self.by_domid[domid]

    def cleared(self, domid: int) -> None:
        for path, token in list(self.by_domid.get(domid, ())):
            self.removed(domid, path, token)

    def replay(self, kind: int, domid: int, path: str, token: bytes, relative: bool) -> None:
        """A journal entry, at start-up."""
        if kind == WATCH:
            self.by_domid.setdefault(domid, {})[(path, token)] = relative
        else:
            watches = self.by_domid.get(domid, {})
            watches.pop((path, token), None)
            if not watches:
                self.by_domid.pop(domid, None)

    def keep_only(self, introduced) -> None:
        """Forget the watches of domains for which ``introduced(domid)`` is false (after loading)."""
        for domid in [x for x in self.by_domid if not introduced(x)]:
            del self.by_domid[domid]

    def state(self) -> dict:
        return {str(domid): [[path, token.hex(), relative]
                             for (path, token), relative in watches.items()]
                for domid, watches in self.by_domid.items()}

    def restore(self, state: dict) -> None:
        self.by_domid = {int(domid): {(path, bytes.fromhex(token)): relative
                                      for path, token, relative in watches}
                         for domid, watches in state.items()}

    def encode(self, codec, parts: list) -> None:
        for kind, domid, path, token, relative in self.pending:
            codec.watch(parts, kind, domid, path, token, relative)
        self.pending.clear()

    def differences(self, daemon) -> list:
        """Problems: a guest session whose watches differ from what the journal keeps."""
        problems = []
        for s in daemon.sessions:
            if s.journal_watches and daemon.domains.is_introduced(s.domid):
                live = {(w.path, w.token): w.relative for w in s.watches.values()}
                if live != self.by_domid.get(s.domid, {}):
                    problems.append(f"dom{s.domid}: journaled watches differ from its session's")
        return problems
