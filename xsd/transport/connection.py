"""A socket client: asyncio.Protocol from bytes to requests and back (through the pump).

Callback order, as asyncio runs them: ``connection_made`` once; then
``data_received`` per chunk, interleaved with ``pause_writing`` /
``resume_writing`` when the transport's buffer crosses its marks (or, once
the daemon-wide output budget is spent, as soon as it holds any: ``squeeze``); then
``connection_lost`` once.  While writing is paused no request of this client
is handled: the rest wait in ``queue`` and reading is paused, so a client
that does not read its replies cannot make the daemon grow.

Given the C poller (poller.py), the transport never reads: the poller does,
answering and writing what it can itself while the connection is direct
(``go_direct``), and hands the rest here: what it read, as ``data_received``
gets it, or the run it made on it (``polled``), replies the socket did not
take (``unsent``), or the end of the stream (``ended``: then the transport reads
again and meets it, as it always would).
"""
import asyncio
import logging
from collections import deque

from xenstore_protocol import HEADER_SIZE, Decoder, ProtocolError
from xenstore_protocol.decoder import missing

from .pump import FLUSH_AT

log = logging.getLogger("xsd.connection")


class Connection(asyncio.Protocol):
    def __init__(self, pump, read_only: bool, name: str, poller=None):
        self.pump = pump              # pump.RequestPump, shared with every transport
        self.poller = poller          # poller.SocketPoller, or None: the transport reads
        self.pconn = None             # its registration there (xsd._native.poller.PConn)
        self.poll_id = 0
        self.direct = False           # the poller may answer and write our batches (as of:)
        self.direct_epoch = -1        # ... FastPath.epoch
        self.reading = True           # not paused by pause_reading (whoever reads)
        self.watcher = None           # (registry handle, events) last told the pconn
        self.daemon = pump.daemon
        self.read_only = read_only
        self.name = name
        self.decoder = Decoder()
        self.partial = False         # the decoder holds part of a packet (read after each feed)
        self.queue = deque()         # requests received while output was paused
        self.transport = None
        self.session = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self._set_write_limits()
        self.session = self.daemon.open_session(
            transport.write, domid=0, privileged=True, read_only=self.read_only, name=self.name,
            unsent=transport.get_write_buffer_size, squeeze=self.squeeze, direct_replies=True)
        poller = self.poller
        if poller is not None and self.daemon.fastpath is not None:
            self.daemon.fastpath.prepare(self.session)      # the conn the poller runs on
            sock = transport.get_extra_info("socket")
            try:
                self.poll_id, pconn = poller.add(self, sock.fileno())
            except (OSError, MemoryError) as err:
                log.warning("%s: read by its transport, not the poller: %s", self.name, err)
                return
            pconn.reading(False)
            # The event loop starts the transport reading once this returns: the poller
            # takes over from the next turn (what the transport read by then is served
            # as any data_received).
            asyncio.get_running_loop().call_soon(self._start_polling, pconn)

    def _start_polling(self, pconn) -> None:
        transport = self.transport
        if transport.is_closing():
            self.poller.remove(self.poll_id)
            pconn.close()
            return
        transport.pause_reading()
        self.pconn = pconn
        self.session.poller_hold = self._hold
        pconn.reading(self.reading)
        self.go_direct()

    def _set_write_limits(self) -> None:
        high = self.daemon.config.out_high_water
        self.transport.set_write_buffer_limits(high=high, low=high // 4)

    def squeeze(self) -> None:
        """The daemon-wide output budget is spent (session.py): pause now if the transport
        holds any output, and resume once it holds none, so that its drain is told."""
        if not self.transport.is_closing():
            self.transport.set_write_buffer_limits(high=0, low=0)   # calls pause_writing
            if not self.session.paused:
                self._set_write_limits()    # it held nothing after all

    # -- the poller ---------------------------------------------------------------
    def unsent(self, rest: bytes) -> None:
        """The poller answered a batch, but the socket took only part of its replies."""
        self._hold()                    # the transport holds output now: it writes first
        session = self.session
        session.write(rest)
        if session.unsent_held or (session.unsent is not None and session.unsent()):
            session.count_unsent()
        self.go_direct()

    def ended(self) -> None:
        """The poller read the end of the stream, or an error: the transport reads again,
        meets it itself and closes as it always does."""
        self._unpoll()
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def _hold(self) -> None:
        """Session.poller_hold: output waits here, or the client is paused."""
        if self.direct:
            self.direct = False
            self.pconn.direct(False, 0)

    def go_direct(self) -> None:
        """Let the poller answer and write our batches itself when nothing of this client
        waits in Python (queued requests or output, a pause, a partial packet in the
        decoder, output in the transport) and the C path may answer it at all; else not."""
        daemon = self.daemon
        fast = daemon.fastpath
        if self.pconn is None or fast is None:
            return
        session, transport = self.session, self.transport
        if session.out:
            # Replies waiting for the flush (journaling: for the commit): asked again then.
            self._hold()
            self.poller.after_flush(self)
            return
        if self.queue or self.partial or session.paused or session.backlog \
                or transport.is_closing() or transport.get_write_buffer_size() \
                or daemon.access_log or self.pump.snapshot_running():
            self._hold()
            return
        # What Python's handling changed (transactions, RESET_WATCHES, watches, the epoch)
        # the conn learns now, before the poller runs it again.
        conn = fast.prepare(session)
        room = session.event_room(FLUSH_AT)     # initial events among a batch's replies
        if room != conn.inline_room:
            conn.inline(room)
        if fast.fires:
            # Others' watch events the poller may write this client (one per batch of theirs,
            # nothing waiting here): what queue_payload would send at once, not drop or owe.
            watcher = (daemon.watches.session_handle(session),
                       room > 0 and session.max_events > 0 and not session.overflowed)
            if watcher != self.watcher:
                try:
                    self.pconn.watcher(*watcher)
                except MemoryError:
                    pass                # its events stay Python's (the pconn is unchanged)
                else:
                    self.watcher = watcher
        if not (self.direct and self.direct_epoch == fast.epoch):
            self.direct, self.direct_epoch = True, fast.epoch
            self.pconn.direct(True, fast.epoch)

    def _unpoll(self) -> None:
        pconn = self.pconn
        if pconn is not None:
            self.pconn = None
            self.direct = False
            self.session.poller_hold = None
            self.poller.remove(self.poll_id)
            pconn.close()

    def pause_reading(self) -> None:
        self.reading = False
        if self.pconn is not None:
            self.pconn.reading(False)
        else:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.reading = True
        if self.pconn is not None:
            self.pconn.reading(True)
        else:
            self.transport.resume_reading()

    # -- the transport ---------------------------------------------------------------
    def polled(self, data: bytes, run=None) -> None:
        """What the poller read (BYTES), and the engine's run on it when it made one (RUN:
        the connection was direct, so nothing waited before it).  The session's hold is not
        needed meanwhile (the poller does not run while Python handles this): whether the
        connection stays direct is settled once, at the end."""
        session = self.session
        session.poller_hold = None
        try:
            if run is None:
                self.data_received(data)
            else:
                data = self.pump.serve_bytes(session, data, run)
                if data:
                    self._feed(data, True)
        finally:
            if self.pconn is not None:
                session.poller_hold = self._hold
        self.go_direct()

    def data_received(self, data: bytes) -> None:
        session = self.session
        if self.partial and len(data) >= self.decoder.missing() \
                and not (self.queue or session.paused):
            # The rest of a packet split across reads (libxenstore writes a header and its
            # payload apart, and one read may get the header alone): the C path takes the
            # whole packet and what follows, as it would have had they come in one read.
            data = self.decoder.take() + data
            self.partial = False
        served = False
        # A read holding no whole packet (at most a header: libxenstore's alone) skips the
        # engine's run; the length test first, since it is made per read.
        if not (self.queue or session.paused or self.partial) and (
                len(data) > HEADER_SIZE or not missing(data)):
            served = True
            data = self.pump.serve_bytes(session, data)
            if not data:
                return
        self._feed(data, served)

    def _feed(self, data: bytes, served: bool) -> None:
        """``data`` to the decoder, its packets to the pump (``served``: the C path answered
        what came before them)."""
        decoder = self.decoder
        try:
            packets = decoder.feed(data)
        except ProtocolError as err:
            # As the Xen daemons do: requests before the bad frame are answered,
            # then the offending connection is dropped; no one else notices.
            log.warning("%s: protocol error, closing: %s", self.name, err)
            for packet in err.packets:
                self.daemon.handle(self.session, packet)
            self.daemon.flush()
            self.transport.close()
            return
        self.partial = decoder.pending != 0     # the only feed: kept here, not asked per batch
        if not (packets or served):
            return      # a packet's first part (a header alone): nothing answered, to flush
        session = self.session
        if self.queue or session.paused:
            self.queue.extend(packets)
            self.pause_reading()
            return
        self.pump.serve(session, packets, self.queue)
        if self.queue:
            self.pause_reading()
        self.pump.request_flush()           # journaling: once per loop turn (group commit)

    def pause_writing(self) -> None:
        self.session.pause()

    def resume_writing(self) -> None:
        if not self.transport.is_closing():
            self._set_write_limits()        # after squeeze()
        session = self.session
        session.resume()
        queue = self.queue
        self.pump.drain(session, queue, flush_each=True)
        if not queue and not session.paused and not self.transport.is_closing():
            self.resume_reading()
            self.go_direct()

    def connection_lost(self, exc) -> None:
        self._unpoll()
        if self.session is not None:
            self.daemon.close_session(self.session)
        self.queue.clear()
