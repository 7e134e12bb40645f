"""The daemon's state, independent of any I/O: store, watches, domains, quotas, sessions.

Transports (``connection.py`` for sockets, guest rings later) create a
Session per client with ``open_session``, pass each request packet to
``handle``, and call ``flush`` when a batch of requests is done so that all
output it caused leaves in one write per client.  ``request_flush`` is the
same once per loop turn, so that journaling (``persist.py``) writes one
record for every transport's batch of that turn (group commit).
"""
import logging
import os

from xenstore_protocol import paths
from xenstore_protocol.perms import Perm

from . import dispatch, ops
from .domains import DomainTable
from .quota import Quotas
from .session import Session
from .store import Store
from .watches import WatchRegistry

log = logging.getLogger("xsd")


class Daemon:
    def __init__(self, config, handoff=None):
        self.config = config
        self.store = Store()
        self.watches = WatchRegistry(self.store)
        self.domains = DomainTable(config.server_features)
        self.hypervisor = None      # set by guest.Guests: the domain list, rings, event channels
        self.quotas = Quotas(config.quotas, getattr(config, "quotas_soft", None))   # -q (H14b)
        self.sessions = set()
        self.dirty = []             # sessions with output waiting for flush()
        self.access_log = False
        self.loop = None            # set by the server: call_soon/call_later for group commit
        self.live_update = None     # set by the server: starts a live update (control.py)
        self.after_flush = []       # callbacks once output is handed on (guest.py consumes requests)
        self._flush_scheduled = False
        self._batches = 0           # transports' batches waiting for the scheduled flush
        self.persist = None         # persist.Persistence while journaling
        self.guest_watches = None   # persist.GuestWatches while journaling
        if config.state_dir or handoff is not None:
            from ..durability import persist
            if config.state_dir:
                self.guest_watches = persist.GuestWatches()
            self.persist = persist.start(self, handoff)   # saved state, else the initial tree
        else:
            self._init_tree()

    # -- tree ---------------------------------------------------------------
    def _init_tree(self) -> None:
        """C xenstored's initial tree, plus what a toolstack writes for dom0 at boot."""
        boot = Session(lambda data: None, [], name="boot")
        for path, value in (("/tool/xenstored", b""),):
            self._boot_write(boot, path, value)
        if not self.config.no_domain_init:
            self._boot_write(boot, "/local/domain/0/name", b"Domain-0")
            self._boot_write(boot, "/local/domain/0/domid", b"0")

    def _boot_write(self, boot, path: str, value: bytes) -> None:
        ops.do_write(self, boot, self.store, path.encode() + b"\0" + value, [])

    # -- sessions -------------------------------------------------------------
    def open_session(self, write, **kwargs) -> Session:
        session = Session(write, self.dirty, max_events=self.config.max_watch_events, **kwargs)
        self.sessions.add(session)
        return session

    def close_session(self, session: Session) -> None:
        session.closed = True
        self.watches.remove_all(session)
        session.transactions.clear()
        session.backlog.clear()
        session.pending_events.clear()
        session.overflowed.clear()
        self.sessions.discard(session)

    def handle(self, session: Session, packet) -> None:
        dispatch.handle(self, session, packet)

    def flush(self) -> None:
        """Hand every session's gathered output to its transport.

        Journaling, the batch's changes are written (and fsynced) first:
        nothing is acknowledged, no watch event told, before it is on disk.
        """
        persist = self.persist
        if persist is not None:
            persist.commit()
        dirty = self.dirty
        while dirty:
            dirty.pop().flush()
        for callback in self.after_flush:
            callback()
        if persist is not None and persist.want_snapshot:
            persist.checkpoint()

    def request_flush(self) -> None:
        """A transport handed over its batch.  In memory: flush now.  Journaling: flush once
        every transport's callbacks of this loop turn have run, so that one journal write
        and one fsync cover them all (group commit)."""
        if self.persist is None or self.loop is None:
            self.flush()
            return
        self._batches += 1
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        if self.persist.hold_back(self._batches):
            self.loop.call_soon(self._scheduled_flush)   # one more turn: more clients are coming
            return
        self._flush_scheduled = False
        self._batches = 0
        self.flush()

    def watch_journal(self, session):
        """Where a change to ``session``'s watches is journaled (persist.GuestWatches), or None:
        only a guest's, while its domain is introduced (a socket client re-registers by itself)."""
        journal = self.guest_watches
        if journal is not None and session.journal_watches and self.domains.is_introduced(session.domid):
            return journal
        return None

    def state_changed(self) -> None:
        """Domains, quotas, features or special permissions changed: journal them."""
        if self.persist is not None:
            self.persist.meta_dirty = True

    # -- events -------------------------------------------------------------
    def fire(self, events) -> None:
        watches = self.watches
        for event in events:
            kind = event[0]
            if kind is ops.CHANGE:
                watches.fire_change(event[1], event[2], event[3])
            elif kind is ops.REMOVE:
                watches.fire_remove(event[1], event[2])
            elif kind is ops.INITIAL:
                watch = event[1]
                watch.session.queue_event(watch.event_path(watch.path), watch.token, watch)
            elif kind is ops.SPECIAL:
                watches.fire_special(event[1])

    # -- domains ------------------------------------------------------------
    def domain_exists(self, domid: int) -> bool:
        """Dom0, an introduced domain, or one the hypervisor lists (C xenstored asks xc_domain_getinfo)."""
        if self.domains.is_introduced(domid):
            return True
        return self.hypervisor is not None and self.hypervisor.domain_info(domid) is not None

    def forget_domain(self, domid: int, events: list) -> None:
        """After RELEASE or death: drop the domain's nodes (XSA-419), quotas, sessions' rights."""
        if not self.config.keep_orphans:
            store = self.store
            owned = sorted((p for p, n in store.nodes.items() if n.owner == domid and p != "/"),
                           key=len)
            for path in owned:
                if path in store.nodes:
                    removed = ops.subtree(store, path)
                    ops._remove_subtree(store, path, removed)
                    events.append((ops.REMOVE, path, removed))
        self._forget_in_perms(domid)
        self.quotas.forget(domid)
        if self.guest_watches is not None:
            self.guest_watches.cleared(domid)
        for domain in self.domains.domains.values():
            if domain.target == domid:
                domain.target = None
                self.retarget(domain.domid, None)
        self.retarget(domid, None)
        self.state_changed()
        events.append((ops.SPECIAL, paths.RELEASE_DOMAIN))

    def _forget_in_perms(self, domid: int) -> None:
        """XSA-322: a later domain with this domid inherits no right of this one.

        Its entries leave the permissions of the nodes that stay, and nodes it
        still owns (--keep-orphans) go to dom0, as oxenstored does; C xenstored
        hides such entries by generation instead.  No watch fires.
        """
        store = self.store
        for path, node in list(store.nodes.items()):
            perms = node.perms
            if not any(p.domid == domid for p in perms):
                continue
            owner = perms[0] if perms[0].domid != domid else Perm(perms[0].kind, 0)
            store.set_perms(path, (owner,) + tuple(p for p in perms[1:] if p.domid != domid))
        special = self.watches.special_perms
        for name, perms in list(special.items()):
            if any(p.domid == domid for p in perms):
                owner = perms[0] if perms[0].domid != domid else Perm(perms[0].kind, 0)
                special[name] = (owner,) + tuple(p for p in perms[1:] if p.domid != domid)

    def retarget(self, domid: int, target) -> None:
        for session in self.sessions:
            if session.domid == domid and not session.privileged:
                session.target = target

    # -- introspection ------------------------------------------------------
    def check(self) -> list:
        problems = self.store.check()
        counted = sum(len(s.watches) for s in self.sessions)
        if counted != len(self.watches):
            problems.append(f"watch registry holds {len(self.watches)}, sessions {counted}")
        if len(self.watches.trie) != len(self.watches):
            problems.append(f"watch trie holds {len(self.watches.trie)}, registry {len(self.watches)}")
        if self.guest_watches is not None:
            for s in self.sessions:
                if self.watch_journal(s) is not None:
                    live = {key: w.relative for key, w in s.watches.items()}
                    if live != self.guest_watches.by_domid.get(s.domid, {}):
                        problems.append(f"dom{s.domid}: journaled watches differ from its session's")
        return problems

    def usage(self, domid: int) -> dict:
        sessions = [s for s in self.sessions if s.domid == domid]
        return {
            "nodes": self.store.owned_by(domid),
            "watches": sum(len(s.watches) for s in sessions),
            "transactions": sum(len(s.transactions) for s in sessions),
        }

    def statistics(self) -> dict:
        from .._native import BACKEND
        nodes = self.store.nodes
        return {
            **(self.persist.statistics() if self.persist is not None else {"persist": "off"}),
            "nodes": len(nodes),
            "value-bytes": sum(len(n.value) for n in nodes.values()),
            "watches": len(self.watches),
            "connections": len(self.sessions),
            "transactions": sum(len(s.transactions) for s in self.sessions),
            "domains": len(self.domains.domains),
            "events-dropped": sum(s.events_dropped for s in self.sessions),
            "native-backend": BACKEND,
            "rss-kib": _rss_kib(),
        }


def _rss_kib() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except OSError:
        return 0
