"""Bytes in, packets out: the framing of xsd_sockmsg, with no I/O."""
from .constants import HEADER, HEADER_SIZE, PAYLOAD_MAX
from .errors import ProtocolError
from .packet import Packet


def missing(data) -> int:
    """At least how many more bytes ``data``, from the start of a packet, needs to hold
    that packet whole: the rest of its payload, or while its header is incomplete the rest
    of the header (the payload's length is not known yet); 0 when it holds it."""
    held = len(data)
    if held < HEADER_SIZE:
        return HEADER_SIZE - held
    return max(0, HEADER_SIZE + HEADER.unpack_from(data)[3] - held)


class Decoder:
    """Accumulates bytes and yields whole packets.

    ``feed`` accepts any split of the stream (one byte at a time is fine).
    A header announcing more than PAYLOAD_MAX bytes raises ProtocolError, the
    one error this class raises (carrying the whole packets before it); after
    it the stream is unusable, as in the Xen daemons, which drop such a
    connection.
    """

    __slots__ = ("_buf", "_broken")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._broken = False

    def feed(self, data: bytes) -> list:
        """Add ``data``; return every packet now complete, in order."""
        if self._broken:
            raise ProtocolError("stream already broken")
        buf = self._buf
        buf += data
        packets = []
        pos = 0
        end = len(buf)
        while end - pos >= HEADER_SIZE:
            op, req_id, tx_id, length = HEADER.unpack_from(buf, pos)
            if length > PAYLOAD_MAX:
                self._broken = True
                del buf[:]
                raise ProtocolError(f"payload length {length} exceeds {PAYLOAD_MAX}", packets)
            stop = pos + HEADER_SIZE + length
            if stop > end:
                break
            packets.append(Packet(op, req_id, tx_id, bytes(buf[pos + HEADER_SIZE:stop])))
            pos = stop
        if pos:
            del buf[:pos]
        return packets

    def unread(self) -> bytes:
        """The bytes held that do not yet make a whole packet, exactly as fed (to hand the
        stream over to another decoder, which ``feed`` takes them back in)."""
        return bytes(self._buf)

    @property
    def pending(self) -> int:
        """Bytes held that do not yet make a whole packet."""
        return len(self._buf)

    def missing(self) -> int:
        """At least how many more bytes the packet held needs to be whole (``missing``)."""
        return missing(self._buf)

    def take(self) -> bytes:
        """The bytes held, exactly as fed, now no longer held: a reader that frames the
        stream itself (the C request path) takes over from them."""
        held = bytes(self._buf)
        del self._buf[:]
        return held
