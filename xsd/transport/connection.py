"""A socket client: asyncio.Protocol from bytes to requests and back (through the pump).

Callback order, as asyncio runs them: ``connection_made`` once; then
``data_received`` per chunk, interleaved with ``pause_writing`` /
``resume_writing`` when the transport's buffer crosses its marks (or, once
the daemon-wide output budget is spent, as soon as it holds any: ``squeeze``); then
``connection_lost`` once.  While writing is paused no request of this client
is handled: the rest wait in ``queue`` and reading is paused, so a client
that does not read its replies cannot make the daemon grow.
"""
import asyncio
import logging
from collections import deque

from xenstore_protocol import HEADER_SIZE, Decoder, ProtocolError
from xenstore_protocol.decoder import missing

log = logging.getLogger("xsd.connection")


class Connection(asyncio.Protocol):
    def __init__(self, pump, read_only: bool, name: str):
        self.pump = pump              # pump.RequestPump, shared with every transport
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
            self.transport.pause_reading()
            return
        self.pump.serve(session, packets, self.queue)
        if self.queue:
            self.transport.pause_reading()
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
            self.transport.resume_reading()

    def connection_lost(self, exc) -> None:
        if self.session is not None:
            self.daemon.close_session(self.session)
        self.queue.clear()
