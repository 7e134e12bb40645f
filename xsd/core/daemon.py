"""The daemon's state and request path, free of I/O: store, watches, domains, quotas, sessions.

Transports (``xsd.transport``) create a Session per client with
``open_session``, pass each request packet to ``handle``, and call ``flush``
when a batch of requests is done so that all output it caused leaves in one
write per client (when to flush, group commit, is the transport's request
pump: ``xsd/transport/pump.py``).

Doors to the outside, all given when the daemon is built:

- ``host`` (``Host``): what the core asks of the world: the hypervisor's
  ``domain_info`` and ``live_update``.
- ``durability``: the saved state.  ``durability.open(daemon)`` fills the
  daemon (``from_state``, the store's nodes, or ``init_tree``) and returns
  the listener that journals from then on, or None.
- listeners (``add_listener``, see ``Listener``): told each batch's store
  changes before any of its output leaves, guests' watches added and
  removed, and that domains, quotas, features or special permissions
  changed; ``to_state`` / ``from_state`` give and take that state.
"""
import logging
import os
from time import perf_counter

from xenstore_protocol import paths
from xenstore_protocol.perms import Perm, parse

from ..hypervisor.base import DYING, SHUTDOWN
from . import dispatch, fastpath, ops
from .events import CHANGE, INITIAL, REMOVE, SPECIAL
from .domains import DomainTable
from .quota import Quotas
from .session import OutputBudget, Session
from .stats import Stats
from .store import new_store
from .transactions import transaction_type
from .watches import new_registry, watch_key

log = logging.getLogger("xsd")


class Host:
    """What the core needs from outside; the defaults stand for none (tests, tools).

    The server (``xsd/transport/server.py``) is the host of a running daemon.
    """

    def domain_info(self, domid: int):
        """The hypervisor's record of ``domid``, or None when it knows no such domain."""
        return None

    live_update = None      # or a callable starting a live update: "OK" or "BUSY" (control.py)


class Listener:
    """What the core reports (durability and live update listen); every method may be left out.

    Order within ``Daemon.flush``: ``commit`` (before any output of the
    batch leaves: a journal writes it here), output, ``after_output``.
    """

    def commit(self) -> None:
        """The batch is over.  Its store changes are the store's change log, kept while a
        listener asked for them (``add_listener``'s ``track_changes``); that listener
        takes them (``take_changes``, or the journal's record builder in C) and so empties
        the log."""

    def after_output(self) -> None:
        """The batch's output is handed on (a good moment for slower work)."""

    def watch_added(self, domid: int, path: str, token: bytes, relative: bool) -> None:
        """A guest's watch (only watches that outlive the connection: ``Session.journal_watches``)."""

    def watch_removed(self, domid: int, path: str, token: bytes) -> None:
        """A guest removed one."""

    def watches_cleared(self, domid: int) -> None:
        """A guest's watches are gone for good (RESET_WATCHES, a dropped connection, release)."""

    def state_changed(self) -> None:
        """Domains, quotas, features or special permissions changed (``to_state``)."""

    def check(self, daemon) -> list:
        """Problems of the listener's own state against the daemon's (CONTROL check)."""
        return []

    def statistics(self) -> dict:
        return {}


class Daemon:
    def __init__(self, config, host=None, durability=None, store=None):
        """``store``: the node store, by default the backend's (``new_store``); a test gives
        the Python store to hold the C request path to it (tests/native/test_engine.py)."""
        self.config = config
        self.host = host if host is not None else Host()
        self.store = new_store() if store is None else store
        self.watches = new_registry(self.store, python=config.python_watches)
        self.domains = DomainTable(config.server_features)
        self.quotas = Quotas(config.quotas, config.soft_quotas)
        self.output_budget = OutputBudget(config.out_budget or 64 * config.out_high_water)
        self.sessions = set()
        self.stats = Stats()        # counters read by CONTROL stats and --metrics
        self.dirty = []             # sessions with output waiting for flush()
        self.access_log = False
        self.live_update = self.host.live_update    # control.py: None without a server
        self.after_flush = []       # callbacks once output is handed on (guest.py consumes requests)
        self.after_commit = []      # callbacks after the listeners' commit, before any output
                                    # (the C poller's replies waiting for it: transport/poller.py)
        self.listeners = []
        self.persist = None         # the journaling listener, while journaling
        self.fastpath = None        # the C request path (fastpath.py), once the store is built
        if durability is None:
            self.init_tree()
        else:
            self.persist = durability.open(self)     # saved state, else the initial tree
        if not config.python_requests and fastpath.available(self.store):
            self.fastpath = fastpath.FastPath(self)

    def add_listener(self, listener, track_changes: bool = False) -> None:
        """``listener`` is told of changes from now on; ``track_changes``: it takes the
        store's changes at each ``Listener.commit`` (one listener: taking empties the log)."""
        self.listeners.append(listener)
        if track_changes:
            self.store.track(True)

    # -- state that must survive ------------------------------------------------
    def to_state(self) -> dict:
        """Domains, quotas, features and special permissions, as JSON-able data
        (the store's nodes are the store's: ``store.preorder``)."""
        domains = self.domains
        return {
            "domains": [[x.domid, x.mfn, x.port, x.target, x.shutdown_seen, x.features, x.uuid]
                        for x in domains.domains.values()],
            "pending_features": [[domid, value] for domid, value in domains.pending_features.items()],
            "quotas": dict(self.quotas.values),
            "soft_quotas": dict(self.quotas.soft),
            "quota_overrides": [[domid, dict(values)]
                                for domid, values in self.quotas.per_domain.items()],
            "special_perms": {name: [f"{p.kind}{p.domid}" for p in perms]
                              for name, perms in self.watches.special_perms.items()},
        }

    def from_state(self, state: dict) -> None:
        """Inverse of ``to_state``.  Quotas given on this run's command line win over saved ones."""
        from .domains import Domain
        table = self.domains
        table.domains.clear()
        for row in state["domains"]:
            domid, mfn, port, target, shutdown_seen, features = row[:6]
            domain = Domain(domid, mfn, port, features)
            domain.target = target
            domain.shutdown_seen = shutdown_seen
            domain.uuid = row[6] if len(row) > 6 else None      # state saved before uuids were
            table.domains[domid] = domain
        table.pending_features = {domid: value for domid, value in state["pending_features"]}
        quotas = self.quotas
        quotas.values.update(state["quotas"])
        quotas.soft.update(state.get("soft_quotas", {}))     # absent from state saved before them
        for name, value in self.config.quotas.items():
            quotas.set(name, value)
        for name, value in self.config.soft_quotas.items():
            quotas.set_soft(name, value)
        quotas.per_domain = {domid: dict(values) for domid, values in state["quota_overrides"]}
        self.watches.special_perms = {name: tuple(parse(p.encode("ascii")) for p in perms)
                                      for name, perms in state["special_perms"].items()}

    # -- tree ---------------------------------------------------------------
    def init_tree(self) -> None:
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
        session = Session(write, self.dirty, max_events=self.config.max_watch_events,
                          budget=self.output_budget, **kwargs)
        self.sessions.add(session)
        return session

    def session_state(self, session: Session) -> dict:
        """What a client's session holds beyond the store (live update): watches,
        transactions, pending output."""
        return {
            "domid": session.domid, "privileged": session.privileged,
            "read_only": session.read_only, "target": session.target, "name": session.name,
            "next_tx_id": session.next_tx_id,
            # Registration order is firing order: ids grow with it.
            "watches": [[w.path, w.token.hex(), w.relative]
                        for w in sorted(session.watches.values(), key=lambda w: w.id)],
            "transactions": sorted(session.transactions),
            "output": b"".join([*session.out, *session.backlog]).hex(),
            "events_dropped": session.events_dropped,
        }

    def restore_session(self, session: Session, state: dict) -> None:
        """Give ``session`` (freshly opened for the same client) what ``session_state`` saved.

        Open transactions cannot move (their overlays are not saved): each comes
        back doomed, so its TRANSACTION_END answers EAGAIN and the client retries,
        which every xenstore client does (C xenstored ends them the same way).
        """
        session.target = state["target"]
        self.watches.session_changed(session)       # a guest's watches may be back already
        session.next_tx_id = state["next_tx_id"]
        session.events_dropped = state["events_dropped"]
        for path, token, relative in state["watches"]:
            token = bytes.fromhex(token)
            if watch_key(path, token) not in session.watches:  # a guest's may be back from the journal
                self.watches.add(session, path, token, relative)
        self.watches_changed(session)
        for tx_id in state["transactions"]:
            session.transactions[tx_id] = transaction_type(self.store).doomed(
                self.store, tx_id, ops.transaction_node_limit(self, session))
        output = bytes.fromhex(state["output"])
        if output:
            session.send(output)

    def close_session(self, session: Session) -> None:
        session.closed = True
        self.stats.retire(session)
        self.watches.detach(session)
        self.watches_changed(session)   # its handle there may go to another session now
        session.transactions.clear()
        session.discard_output()
        self.sessions.discard(session)

    def handle(self, session: Session, packet) -> None:
        dispatch.handle(self, session, packet)

    def flush(self) -> None:
        """Hand every session's gathered output to its transport.

        Listeners first (``Listener.commit``): journaling, the batch's changes
        are written (and fsynced) before anything is acknowledged or any
        watch event told.
        """
        started = perf_counter() if self.stats.timed else None
        listeners = self.listeners
        for listener in listeners:
            listener.commit()
        for callback in self.after_commit:
            callback()
        # Last queued, first written: a change's writer before its watchers (the reply is
        # queued after the events).  The Xen daemons write connections in the order they
        # connected; writing the watchers first (as they do for xsbench watch:W) gave no
        # steady gain in write-to-event latency and cost streamed writes up to half their
        # rate on two cores (docs/benchmarks.md, "the way from a WRITE to its event").
        dirty = self.dirty
        while dirty:
            dirty.pop().flush()
        for callback in self.after_flush:
            callback()
        if started is not None:
            self.stats.observe_flush(perf_counter() - started)
        for listener in listeners:
            listener.after_output()

    # -- what listeners are told ---------------------------------------------------
    def keeps_watches(self, session) -> bool:
        """A guest's watches outlive its connection while its domain is introduced
        (a socket client re-registers by itself)."""
        return session.journal_watches and self.domains.is_introduced(session.domid)

    def watches_changed(self, session) -> None:
        """``session``'s watches changed: the C request path relearns their bytes (the memory
        quota counts them) before its next batch."""
        session.native_epoch = -1
        if session.poller_hold is not None:
            session.poller_hold()       # the C poller must not answer it unconfigured

    def watch_added(self, session, watch) -> None:
        self.watches_changed(session)
        if self.keeps_watches(session):
            for listener in self.listeners:
                listener.watch_added(session.domid, watch.path, watch.token, watch.relative)

    def watch_removed(self, session, path: str, token: bytes) -> None:
        self.watches_changed(session)
        if self.keeps_watches(session):
            for listener in self.listeners:
                listener.watch_removed(session.domid, path, token)

    def watches_logged(self, session, changes) -> None:
        """The WATCHes and UNWATCHes the C request path answered for ``session``, whose
        watches listeners hear of (fastpath.configure_watches), in the order answered:
        ``(added, path, token, relative)`` each, told as ``watch_added`` and
        ``watch_removed`` tell them.  The engine reads the session's watch bytes from
        the registry itself: nothing to reconfigure."""
        if not self.keeps_watches(session):
            return
        domid, listeners = session.domid, self.listeners
        for added, path, token, relative in changes:
            for listener in listeners:
                if added:
                    listener.watch_added(domid, path, token, relative)
                else:
                    listener.watch_removed(domid, path, token)

    def watches_reset(self, session) -> None:
        """``session``'s watches are gone for good (RESET_WATCHES, a dropped guest connection)."""
        self.watches_changed(session)
        if self.keeps_watches(session):
            for listener in self.listeners:
                listener.watches_cleared(session.domid)

    def state_changed(self) -> None:
        """Domains, quotas, features or special permissions changed: listeners save ``to_state``,
        the C request path relearns sessions' rights and the known domains."""
        if self.fastpath is not None:
            self.fastpath.state_changed()
        self.watches.sessions_changed()
        for listener in self.listeners:
            listener.state_changed()

    # -- events -------------------------------------------------------------
    def fire(self, events) -> None:
        watches = self.watches
        for event in events:
            kind = event[0]
            if kind is CHANGE:
                watches.fire_change(event[1], event[2], event[3])
            elif kind is REMOVE:
                watches.fire_remove(event[1], event[2])
            elif kind is INITIAL:
                watch = event[1]
                watch.session.queue_event(watch.event_path(watch.path), watch.token, watch.key)
            elif kind is SPECIAL:
                watches.fire_special(event[1])

    # -- domains ------------------------------------------------------------
    def domain_exists(self, domid: int) -> bool:
        """Dom0, an introduced domain, or one the hypervisor lists (C xenstored asks xc_domain_getinfo)."""
        if self.domains.is_introduced(domid):
            return True
        return self.host.domain_info(domid) is not None

    def forget_domain(self, domid: int, events: list) -> None:
        """After RELEASE or death: drop the domain's nodes (XSA-419), quotas, sessions' rights."""
        store = self.store
        # The nodes the domain owns, and every node whose permissions name it: one scan
        # inside the store (in C on the C store: no record per node of the tree).
        named = store.naming(domid)
        owned = [path for path, owns in named if owns and path != "/"]
        named = [path for path, _ in named]
        if not self.config.keep_orphans:
            for path in sorted(owned, key=len):
                if store.get(path) is not None:
                    removed = store.remove_tree(path)
                    events.append((REMOVE, path, removed))
        self._forget_in_perms(domid, named)
        self.quotas.forget(domid)
        self.stats.forget(domid)
        for listener in self.listeners:
            listener.watches_cleared(domid)
        for domain in self.domains.domains.values():
            if domain.target == domid:
                domain.target = None
                self.retarget(domain.domid, None)
        self.retarget(domid, None)
        self.state_changed()
        events.append((SPECIAL, paths.RELEASE_DOMAIN))

    def reconcile_domains(self, infos: dict) -> None:
        """VIRQ_DOM_EXC (guest.py asks the hypervisor, ``infos``: domid -> DomainInfo): release
        introduced domains that died or were replaced by a new domain on the same domid, as
        C xenstored's domain_cleanup; one @releaseDomain for domains newly shut down."""
        events = []
        released = shut_down = False
        for domid, domain in list(self.domains.domains.items()):
            info = infos.get(domid)
            known = domain.uuid
            if info is None or info.state == DYING or known is None or info.uuid != known:
                why = ("gone" if info is None else "dying" if info.state == DYING
                       else "never known to the hypervisor" if known is None else "replaced")
                log.info("domain %d %s: released", domid, why)
                self.domains.release(domid)         # its connection goes (the on_release hook)
                self.forget_domain(domid, events)   # nodes, quotas, targets; @releaseDomain
                released = True
            elif info.state == SHUTDOWN and not domain.shutdown_seen:
                log.info("domain %d shut down (%s)", domid, info.shutdown_reason)
                domain.shutdown_seen = True
                shut_down = True
        if shut_down and not released:
            events.append((SPECIAL, paths.RELEASE_DOMAIN))
        # Settings made for a domid never introduced go with the domain (XSA-322).
        stale_quotas = [x for x in self.quotas.per_domain
                        if x not in infos and not self.domains.is_introduced(x)]
        stale_features = [x for x in self.domains.pending_features if x not in infos]
        for domid in stale_quotas:
            self.quotas.forget(domid)
        for domid in stale_features:
            del self.domains.pending_features[domid]
        if shut_down or stale_quotas or stale_features:
            self.state_changed()
        if events:
            self.fire(events)

    def _forget_in_perms(self, domid: int, named: list) -> None:
        """XSA-322: a later domain with this domid inherits no right of this one.

        Its entries leave the permissions of the nodes that stay, and nodes it
        still owns (--keep-orphans) go to dom0, as oxenstored does; C xenstored
        hides such entries by generation instead.  No watch fires.  ``named``: the
        paths whose permissions named the domid (some may be gone since).
        """
        store = self.store
        for path in named:
            node = store.get(path)
            if node is None:
                continue
            perms = node.perms
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
        for listener in self.listeners:
            problems.extend(listener.check(self))
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
        store = self.store
        return {
            **(self.persist.statistics() if self.persist is not None else {"persist": "off"}),
            "nodes": len(store),
            "value-bytes": sum(len(n.value) for _, n in store.items()),
            "watches": len(self.watches),
            "connections": len(self.sessions),
            "transactions": sum(len(s.transactions) for s in self.sessions),
            "domains": len(self.domains.domains),
            "events-dropped": sum(s.events_dropped for s in self.sessions),
            "native-backend": BACKEND,
            "rss-kib": _rss_kib(),
            **({"c-path-requests": self.fastpath.answered(self.sessions)}
               if self.fastpath is not None else {}),
            **({"c-poller-batches": self.fastpath.poller.direct_batches()}
               if self.fastpath is not None and self.fastpath.poller is not None else {}),
        }


def _rss_kib() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except OSError:
        return 0
