"""Guest domains over their ring pages: the transport beside ``connection.py``'s sockets.

``Guests`` plugs into the daemon through ``DomainTable.on_introduce`` /
``on_release``: INTRODUCE maps the domain's ring and binds its event channel;
RELEASE undoes it.  It owns the hypervisor's event-channel handle, whose one
descriptor is registered with the asyncio loop, and watches VIRQ_DOM_EXC:
on each, the domain list is read and handed to ``Daemon.reconcile_domains``:
domains that died, or were replaced by a new domain with the same domid, are
released as C xenstored's domain_cleanup does (``@releaseDomain``, XSA-419
node removal), while domains newly shut down get one ``@releaseDomain``
(again only after RESUME).  Requests go through the request pump shared with
socket connections (``pump.py``).

A ``GuestConnection`` serves one domain as an unprivileged Session with the
domain's domid.  Callback order: it is created while INTRODUCE is handled,
and its first ``kick`` runs on the next loop iteration, after INTRODUCE's
reply; then one ``kick`` per notification from the guest, interleaved with
``_write`` whenever the daemon flushes output for the session; ``close``
once, on RELEASE, death of the domain or daemon shutdown.

Requests stay in the ring until the batch that handled them is journaled and
its replies are in ``rsp``: they are read with ``peek_requests`` and consumed
(``ack``) from the daemon's flush (``Guests._acknowledge``).  A crash in
between leaves them for the next daemon, which handles them then, so a
request the guest sent is answered even across a crash.  (Only a packet
larger than the ring must be consumed in parts, as it arrives.)

Bounds: output waits in ``out`` until the guest makes room in ``rsp``; past
``out_high_water`` bytes the session is paused, so its watch events are
coalesced or dropped there and no request of this guest is read until the
guest has consumed enough.  Its own request ring, 1024 bytes, then fills and
the guest stalls, not the daemon.  A guest that writes garbage indexes or an
oversized packet loses its connection (session, watches, transactions; the
``error`` field says why when it negotiated XENSTORE_SERVER_FEATURE_ERROR);
the domain stays introduced, as in C xenstored's ignore_connection, and may
start afresh through ring reconnection (XENSTORE_SERVER_FEATURE_RECONNECTION).
"""
import asyncio
import logging
import secrets
from collections import deque

from xenstore_protocol import Decoder, ProtocolError, XenstoreError
from xenstore_protocol.constants import (HEADER, HEADER_SIZE, SERVER_FEATURE_ERROR,
                                         SERVER_FEATURE_RECONNECTION, Op)

from ..core.watches import watch_key
from ..hypervisor.base import VIRQ_DOM_EXC, HypervisorError, NoRing
from .ring import (
    ERROR_COMM, ERROR_NONE, ERROR_PROTO, RING_SIZE, XENSTORE_CONNECTED, XENSTORE_RECONNECT, Ring,
    RingError,
)

log = logging.getLogger("xsd.guest")

# What the ring transport implements; a domain gets these bits of its negotiated features.
RING_FEATURES = SERVER_FEATURE_RECONNECTION | SERVER_FEATURE_ERROR
_WATCH_EVENT = int(Op.WATCH_EVENT)
# Ring-fulls of requests read per kick before other clients get a turn.
READS_PER_KICK = 4


class GuestConnection:
    def __init__(self, pump, domain, mapping, evtchn, port: int):
        self.pump = pump                # pump.RequestPump, shared with every transport
        self.daemon = daemon = pump.daemon
        self.domain = domain            # the DomainTable entry: features, target
        self.domid = domain.domid
        self.mapping = mapping
        self.ring = Ring(mapping.buffer)
        self.evtchn = evtchn
        self.port = port
        self.features = domain.features & RING_FEATURES
        self.high = daemon.config.out_high_water
        self.low = self.high // 4
        self.out = bytearray()          # output not yet in the ring
        self.out_written = 0            # bytes of output that went into the ring, ever
        self.out_added = 0              # bytes of output handed to _write, ever
        self.replies_waiting = deque()  # where each reply in ``out`` ends (in out_added terms)
        self.queue = deque()            # requests read while output was paused
        self.decoder = Decoder()
        self.unacked = 0                # request bytes read from the ring, not yet consumed there
        self.session = None
        self.broken = False             # connection dropped for a protocol violation
        self.closed = False
        # Advertised before any byte moves; bits are never cleared (xenstore-ring.txt).
        if self.features:
            self.ring.server_features = self.ring.server_features | self.features
        self._open_session()

    def __repr__(self) -> str:
        return f"<GuestConnection dom{self.domid} port {self.port}>"

    def _open_session(self) -> None:
        session = self.daemon.open_session(self._write, domid=self.domid, privileged=False,
                                           name=f"dom{self.domid}", unsent=self._unsent,
                                           squeeze=self._squeeze)
        session.target = self.domain.target
        session.journal_watches = True
        self.session = session

    # -- output -------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        """The session's output (Session.write): into the ring, the rest waits in ``out``."""
        if self.broken or self.closed:
            return
        self._note_replies(data)
        self.out += data
        self._push()
        if len(self.out) > self.high and not self.broken:
            self.session.pause()

    def _unsent(self) -> int:
        """Output not yet in the ring, for the daemon-wide output budget (session.py)."""
        return len(self.out)

    def _squeeze(self) -> None:
        """The daemon-wide output budget is spent (session.py): pause now if output waits;
        kick() resumes the session once the guest has read it down to the low-water mark."""
        if self.out and not self.broken:
            self.session.pause()

    def _push(self) -> None:
        out = self.out
        if not out:
            return
        try:
            n = self.ring.write_responses(out)
        except RingError as err:
            self.fail(err.code, f"response ring: {err}")
            return
        if n:
            del out[:n]
            self.out_written += n
            waiting = self.replies_waiting
            while waiting and waiting[0] <= self.out_written:
                waiting.popleft()
            self.evtchn.notify(self.port)

    def _note_replies(self, data: bytes) -> None:
        """Remember where each reply (not watch event) in ``data`` ends: C xenstored's
        outstanding requests (ACC_OUTST) are those whose reply is not yet in the ring."""
        offset = 0
        while offset + HEADER_SIZE <= len(data):
            op, _, _, length = HEADER.unpack_from(data, offset)
            offset += HEADER_SIZE + length
            if op != _WATCH_EVENT:
                self.replies_waiting.append(self.out_added + offset)
        self.out_added += len(data)

    def _outstanding_full(self) -> bool:
        """The ``outstanding`` quota: while that many replies wait for room in the ring,
        no request of this guest is read (C xenstored's domain_can_read)."""
        limit = self.daemon.quotas.get("outstanding", self.domid)
        return bool(limit) and len(self.replies_waiting) >= limit

    # -- input ----------------------------------------------------------------
    def kick(self) -> bool:
        """Serve what the ring holds.  True when requests are left for another turn."""
        if self.closed:
            return False
        ring = self.ring
        if self.features & SERVER_FEATURE_RECONNECTION and ring.connection == XENSTORE_RECONNECT:
            self._reconnect()
            return False
        if self.broken:
            return False
        session = self.session
        self._push()
        if session.paused and len(self.out) <= self.low and not self.broken:
            session.resume()            # hands the backlog to _write; may pause again
        queue = self.queue
        if not self.broken:
            self.pump.drain(session, queue)
        reads = 0
        more = False
        decoder = self.decoder
        while not (session.paused or queue or self.broken):
            if reads == READS_PER_KICK:
                more = True             # a busy guest: let other clients in, come back
                break
            if self._outstanding_full():
                break                   # read again once the guest takes replies (a kick)
            try:
                data = ring.peek_requests(self.unacked)
            except RingError as err:
                self.fail(err.code, f"request ring: {err}")
                return False
            if not data:
                break
            reads += 1
            self.unacked += len(data)
            if decoder.pending and len(data) >= decoder.missing():
                # The rest of a packet split across reads (connection.py says why): the C
                # path takes it whole.  Its bytes stay unacked until it is handled.
                data = decoder.take() + data
            if not decoder.pending:
                data = self.pump.serve_bytes(session, data)
                if not data:
                    continue
            try:
                packets = decoder.feed(data)
            except ProtocolError as err:
                self.fail(ERROR_PROTO, f"protocol error: {err}")
                return False
            self.pump.serve(session, packets, queue)
            if decoder.pending and self.unacked >= RING_SIZE:
                # A packet bigger than the ring: the guest needs room to finish it, and
                # room means consuming what came before it too, so journal that first.
                self.daemon.flush()
                self.ack(everything=True)
        return more

    def ack(self, everything: bool = False) -> None:
        """Consume in the ring the requests read and handled (the caller has journaled them
        and written their replies); ``everything``: what was read at all, handled or not."""
        if self.broken or self.closed:
            return
        count = self.unacked
        if not everything:
            # Not yet handled: a partial packet, and packets waiting while output is paused.
            count -= self.decoder.pending + sum(HEADER_SIZE + len(p.payload) for p in self.queue)
        if count > 0:
            self.ring.ack_requests(count)
            self.unacked -= count
            self.evtchn.notify(self.port)   # room in req for a guest waiting to write

    # -- failure, reconnection, end ----------------------------------------------
    def fail(self, code: int, why: str) -> None:
        """Drop this guest's connection; the daemon and the domain's introduction live on."""
        if self.broken or self.closed:
            return
        log.warning("dom%d: %s: connection dropped", self.domid, why)
        self.broken = True
        self._forget_watches()
        self.daemon.close_session(self.session)
        self._drop_io()
        if self.features & SERVER_FEATURE_ERROR:
            self.ring.error = code
            self.evtchn.notify(self.port)

    def _reconnect(self) -> None:
        """The guest asked for a fresh connection (docs/misc/xenstore-ring.txt)."""
        log.info("dom%d: ring reconnection", self.domid)
        if not self.broken:
            self._forget_watches()
            self.daemon.close_session(self.session)
        self._drop_io()
        ring = self.ring
        ring.reset()
        if self.features & SERVER_FEATURE_ERROR:
            ring.error = ERROR_NONE
        self.broken = False
        self._open_session()
        ring.connection = XENSTORE_CONNECTED
        self.evtchn.notify(self.port)

    def _drop_io(self) -> None:
        """Forget what was read and not handled, and output not yet in the ring."""
        self.out.clear()
        self.out_written = self.out_added
        self.replies_waiting.clear()
        self.queue.clear()
        self.decoder = Decoder()
        self.unacked = 0

    def _forget_watches(self) -> None:
        """The guest's session ends for good: its journaled watches go with it."""
        self.daemon.watches_reset(self.session)

    def restore_watches(self, saved: dict, mark: bool) -> None:
        """Register the watches the journal kept for this guest (a restart), in their order.
        ``mark``: after a crash, fire each once on its own path (a legal spurious event):
        events owed to the guest when the daemon died were lost with it, so the guest
        re-reads what lies below each watch rather than miss a change."""
        session = self.session
        for (path, token), relative in saved.items():
            if watch_key(path, token) not in session.watches:
                watch = self.daemon.watches.add(session, path, token, relative)
                if mark:
                    session.queue_event(watch.event_path(path), token, watch.key)
        self.daemon.watches_changed(session)

    # -- live update ------------------------------------------------------------
    def export_state(self) -> dict:
        """What moves to a new process with this connection (liveupdate.py): what was read
        from the ring and not yet answered (the queue, then a partial packet exactly as
        read), output waiting for room in the ring, and the session."""
        self.ack(everything=True)       # what is not yet handled moves with the state
        pending_input = b"".join(p.encode() for p in self.queue) + self.decoder.unread()
        return {"domid": self.domid, "session": self.daemon.session_state(self.session),
                "out": bytes(self.out).hex(), "input": pending_input.hex()}

    def adopt_state(self, state: dict) -> None:
        """Inverse of ``export_state``, in the new process, on the re-attached ring."""
        self.daemon.restore_session(self.session, state["session"])
        self.out[:0] = bytes.fromhex(state["out"])
        self.queue.extend(self.decoder.feed(bytes.fromhex(state["input"])))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.broken:
            self.daemon.close_session(self.session)
        self._drop_io()
        try:
            self.evtchn.unbind(self.port)
        except HypervisorError as err:
            log.warning("dom%d: unbinding port %d: %s", self.domid, self.port, err)
        self.ring.release()
        self.mapping.close()


class Guests:
    """Every introduced domain's ring, and VIRQ_DOM_EXC."""

    def __init__(self, pump, hypervisor, loop=None, live_update: bool = False, saved_watches=None):
        """``saved_watches``: domid -> {(path, token): relative} kept by the journal."""
        self.pump = pump
        self.daemon = daemon = pump.daemon
        self.hypervisor = hypervisor
        self.loop = loop or asyncio.get_event_loop()
        self.evtchn = hypervisor.open_event_channels()
        self.virq_port = self.evtchn.bind_virq(VIRQ_DOM_EXC)
        self.by_port = {}               # local port -> GuestConnection
        self.by_domid = {}
        self.reading = set()            # connections with requests read and not yet consumed
        daemon.after_flush.append(self._acknowledge)
        daemon.domains.on_introduce.append(self._introduce)
        daemon.domains.on_release.append(self._release)
        self.loop.add_reader(self.evtchn.fileno(), self._on_events)
        # Domains restored from saved state (restart, live update) were introduced
        # before we were here: serve their rings now; dead ones go at the first check.
        restored = list(daemon.domains.domains.values())
        saved = saved_watches or {}
        for domain in restored:
            try:
                self._introduce(domain)
            except XenstoreError as err:
                log.warning("restored domain %d: %s", domain.domid, err.detail or err.name)
                continue
            conn = self.by_domid.get(domain.domid)
            if conn is None:
                continue
            if saved.get(domain.domid):
                conn.restore_watches(dict(saved[domain.domid]), mark=not live_update)
                log.info("domain %d: %d watches restored", domain.domid, len(saved[domain.domid]))
            if not live_update:          # (a live update hands the transactions over itself)
                start = secrets.randbelow(0xFFFFFFFF) + 1
                conn.session.next_tx_id = conn.session.tx_issued_from = start
        if restored:
            self.loop.call_soon(self._check_and_flush)

    # -- DomainTable hooks (run while INTRODUCE / RELEASE are handled) ---------
    def _introduce(self, domain) -> None:
        domid = domain.domid
        try:
            info = self.hypervisor.domain_info(domid)
        except HypervisorError as err:
            raise XenstoreError("EIO", str(err)) from None
        if info is None:
            # As C xenstored on a hypervisor that does not know the domain: the
            # introduction stands until the next domain check releases it.
            log.warning("domain %d introduced but unknown to the hypervisor: "
                        "no ring served, released at the next domain check", domid)
            domain.uuid = None
            return
        if domain.uuid is not None and domain.uuid != info.uuid:
            # Restored from saved state, but the domain died and another took its
            # domid while xsd was down: not the same guest, so not its ring.
            log.warning("domain %d: the hypervisor's domain %d has uuid %s, not %s as when "
                        "introduced: replaced while xsd was down; released at the next "
                        "domain check", domid, domid, info.uuid, domain.uuid)
            return
        domain.uuid = info.uuid
        try:
            mapping = self.hypervisor.map_ring(domid, domain.mfn)
        except NoRing as err:
            log.info("domain %d introduced without a ring: %s", domid, err)
            return
        except HypervisorError as err:
            domain.uuid = None              # no ring served: released at the next check
            raise XenstoreError("EINVAL", f"mapping the ring of domain {domid}: {err}") from None
        try:
            port = self.evtchn.bind_interdomain(domid, domain.port)
        except HypervisorError as err:
            mapping.close()
            domain.uuid = None
            raise XenstoreError("EINVAL", f"binding the event channel of domain {domid}: {err}") from None
        conn = GuestConnection(self.pump, domain, mapping, self.evtchn, port)
        self.by_port[port] = conn
        self.by_domid[domid] = conn
        log.info("domain %d introduced: ring mapped, event channel port %d", domid, port)
        self.loop.call_soon(self._first_kick, conn)

    def _first_kick(self, conn) -> None:
        if conn.closed:
            return
        self._kick(conn)
        if not conn.closed:
            conn.evtchn.notify(conn.port)    # as xenstored does after introducing
        self.pump.request_flush()

    def _release(self, domid: int) -> None:
        conn = self.by_domid.pop(domid, None)
        if conn is not None:
            self.by_port.pop(conn.port, None)
            conn.close()

    # -- events -----------------------------------------------------------------
    def _on_events(self) -> None:
        try:
            ports = self.evtchn.pending()
        except Exception:
            log.exception("reading event channels")
            return
        virq = False
        for port in ports:
            if port == self.virq_port:
                virq = True
                continue
            conn = self.by_port.get(port)
            if conn is not None:
                self._kick(conn)
        if virq:
            self.check_domains()
        self.pump.request_flush()

    def _kick(self, conn) -> None:
        try:
            more = conn.kick()
        except Exception:
            log.exception("%r: internal error", conn)
            conn.fail(ERROR_COMM, "internal error")
            return
        if conn.unacked:
            self.reading.add(conn)
        if more:
            self.loop.call_soon(self._kick_again, conn)

    def _acknowledge(self) -> None:
        """Daemon.flush, after the journal and the replies: consume what was handled."""
        if not self.reading:
            return          # every flush asks; mostly none is reading (sockets' flushes)
        for conn in list(self.reading):
            conn.ack()
            if not conn.unacked or conn.closed or conn.broken:
                self.reading.discard(conn)

    def _kick_again(self, conn) -> None:
        if not conn.closed:
            self._kick(conn)
            self.pump.request_flush()

    def _check_and_flush(self) -> None:
        self.check_domains()
        self.pump.request_flush()

    def check_domains(self) -> None:
        """VIRQ_DOM_EXC: compare introduced domains with the hypervisor's list."""
        d = self.daemon
        try:
            infos = self.hypervisor.list_domains()
        except HypervisorError as err:
            log.error("domain check: %s", err)
            return
        d.reconcile_domains(infos)

    def pause(self) -> None:
        """Stop reading guests' requests: their event channel is no longer watched (live update)."""
        self.loop.remove_reader(self.evtchn.fileno())

    def resume(self) -> None:
        self.loop.add_reader(self.evtchn.fileno(), self._on_events)

    def export_state(self) -> list:
        """Each live guest connection's ``export_state`` (live update)."""
        return [conn.export_state() for conn in self.by_domid.values()
                if not (conn.closed or conn.broken)]

    def adopt_state(self, saved: list) -> int:
        """Give each guest connection its saved state back; return how many found theirs."""
        adopted = 0
        for item in saved:
            conn = self.by_domid.get(item["domid"])
            if conn is None:
                log.error("live update: domain %d had a connection, now none: its session is lost",
                          item["domid"])
                continue
            conn.adopt_state(item)
            adopted += 1
        return adopted

    def close(self) -> None:
        self.loop.remove_reader(self.evtchn.fileno())
        if self._acknowledge in self.daemon.after_flush:
            self.daemon.after_flush.remove(self._acknowledge)
        for conn in list(self.by_domid.values()):
            conn.close()
        self.by_domid.clear()
        self.by_port.clear()
        self.evtchn.close()
