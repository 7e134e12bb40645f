"""The xenstore ring page: ``struct xenstore_domain_interface`` (xs_wire.h).

Layout (docs/misc/xenstore-ring.txt), offsets in bytes:

    0     req[1024]        requests, guest -> xenstored
    1024  rsp[1024]        replies and watch events, xenstored -> guest
    2048  req_cons         2052  req_prod
    2056  rsp_cons         2060  rsp_prod
    2064  server_features  2068  connection   2072  error

Indexes are free-running uint32 stream offsets: byte ``x`` of a stream sits
at ``x % 1024``, and arithmetic wraps at 2**32.  A pair is consistent when
``prod - cons`` (mod 2**32) is at most 1024, C xenstored's check_indexes;
anything else is a guest writing garbage, reported as ``RingError``, the one
error this module raises.  Neither end may assume the indexes start at zero.

Each call reads each index once from shared memory, checks it, copies, then
publishes the index it owns: a guest changing the page meanwhile can garble
its own data but never make us touch memory outside the page.  The seven
header words go through a native ``"I"`` view, whose item access is one
aligned 32-bit load or store: ``struct`` with a byte-order prefix moves
bytes one at a time, and the peer could see half an index.  Python's stores
reach memory in program order and x86 does not reorder them, which is the
ordering the protocol asks for (data before index).

Both ends use this class: xenstored consumes ``req`` and produces ``rsp``
(``read_requests`` / ``write_responses``); a guest does the reverse
(``write_requests`` / ``read_responses``), as the test client does.
"""
from xenstore_protocol.constants import RING_SIZE

REQ, RSP = 0, RING_SIZE
REQ_CONS, REQ_PROD, RSP_CONS, RSP_PROD = 2048, 2052, 2056, 2060
SERVER_FEATURES, CONNECTION, ERROR = 2064, 2068, 2072
INTERFACE_SIZE = 2076

# Values of the connection and error fields (xs_wire.h).
XENSTORE_CONNECTED, XENSTORE_RECONNECT = 0, 1
ERROR_NONE, ERROR_COMM, ERROR_RINGIDX, ERROR_PROTO = 0, 1, 2, 3

_MASK = 0xFFFFFFFF
_WRAP = RING_SIZE - 1


class RingError(Exception):
    """The peer left the ring in an impossible state; ``code`` is an ERROR_* value."""

    def __init__(self, message: str, code: int = ERROR_RINGIDX):
        super().__init__(message)
        self.code = code


class Ring:
    def __init__(self, buffer):
        mem = memoryview(buffer)
        if mem.format != "B":
            mem = mem.cast("B")
        if mem.nbytes < INTERFACE_SIZE or mem.readonly:
            raise ValueError(f"a ring needs {INTERFACE_SIZE} writable bytes")
        self.mem = mem
        self.words = mem[REQ_CONS:INTERFACE_SIZE].cast("I")    # req_cons .. error
        assert self.words.itemsize == 4

    def release(self) -> None:
        """Drop the views of the page (so its mapping can be closed)."""
        self.words.release()
        self.mem.release()

    def _get(self, offset: int) -> int:
        return self.words[(offset - REQ_CONS) >> 2]

    def _put(self, offset: int, value: int) -> None:
        self.words[(offset - REQ_CONS) >> 2] = value & _MASK

    def _peek(self, data: int, cons_at: int, prod_at: int, skip: int, limit: int) -> bytes:
        """Up to ``limit`` bytes after the first ``skip`` unconsumed ones; indexes untouched."""
        cons, prod = self._get(cons_at), self._get(prod_at)
        avail = (prod - cons) & _MASK
        if avail > RING_SIZE or avail < skip:
            raise RingError(f"inconsistent indexes at {cons_at}: cons {cons:#x}, prod {prod:#x}"
                            + (f", {skip} bytes already read" if skip else ""))
        n = min(avail - skip, limit)
        if not n:
            return b""
        start = (cons + skip) & _WRAP
        first = min(n, RING_SIZE - start)
        mem = self.mem
        out = bytes(mem[data + start:data + start + first])
        if first < n:                     # the message continues at the ring's start
            out += bytes(mem[data:data + n - first])
        return out

    def _consume(self, data: int, cons_at: int, prod_at: int, limit: int) -> bytes:
        out = self._peek(data, cons_at, prod_at, 0, limit)
        if out:
            self._put(cons_at, self._get(cons_at) + len(out))
        return out

    def _produce(self, data: int, cons_at: int, prod_at: int, chunk) -> int:
        cons, prod = self._get(cons_at), self._get(prod_at)
        used = (prod - cons) & _MASK
        if used > RING_SIZE:
            raise RingError(f"inconsistent indexes at {cons_at}: cons {cons:#x}, prod {prod:#x}")
        n = min(RING_SIZE - used, len(chunk))
        if not n:
            return 0
        start = prod & _WRAP
        first = min(n, RING_SIZE - start)
        mem = self.mem
        mem[data + start:data + start + first] = chunk[:first]
        if first < n:
            mem[data:data + n - first] = chunk[first:n]
        self._put(prod_at, prod + n)
        return n

    # -- xenstored's end ------------------------------------------------------
    def read_requests(self, limit: int = RING_SIZE) -> bytes:
        return self._consume(REQ, REQ_CONS, REQ_PROD, limit)

    def peek_requests(self, skip: int, limit: int = RING_SIZE) -> bytes:
        """Request bytes after the ``skip`` already read, left in the ring until acknowledged:
        a request stays the guest's to resend, in effect, until its effects are journaled."""
        return self._peek(REQ, REQ_CONS, REQ_PROD, skip, limit)

    def ack_requests(self, count: int) -> None:
        """Consume ``count`` request bytes read with ``peek_requests``: room for the guest."""
        self._put(REQ_CONS, self._get(REQ_CONS) + count)

    def write_responses(self, chunk) -> int:
        """Copy as much of ``chunk`` as fits; return how many bytes went in."""
        return self._produce(RSP, RSP_CONS, RSP_PROD, chunk)

    # -- the guest's end --------------------------------------------------------
    def write_requests(self, chunk) -> int:
        return self._produce(REQ, REQ_CONS, REQ_PROD, chunk)

    def read_responses(self, limit: int = RING_SIZE) -> bytes:
        return self._consume(RSP, RSP_CONS, RSP_PROD, limit)

    # -- fields -------------------------------------------------------------------
    def indexes(self) -> tuple:
        """``(req_cons, req_prod, rsp_cons, rsp_prod)`` as they are now."""
        words = self.words
        return words[0], words[1], words[2], words[3]

    def set_indexes(self, req_cons: int, req_prod: int, rsp_cons: int, rsp_prod: int) -> None:
        for i, value in enumerate((req_cons, req_prod, rsp_cons, rsp_prod)):
            self.words[i] = value & _MASK

    def reset(self) -> None:
        """Empty both queues (ring reconnection)."""
        self.set_indexes(0, 0, 0, 0)

    @property
    def server_features(self) -> int:
        return self._get(SERVER_FEATURES)

    @server_features.setter
    def server_features(self, value: int) -> None:
        self._put(SERVER_FEATURES, value)

    @property
    def connection(self) -> int:
        return self._get(CONNECTION)

    @connection.setter
    def connection(self, value: int) -> None:
        self._put(CONNECTION, value)

    @property
    def error(self) -> int:
        return self._get(ERROR)

    @error.setter
    def error(self, value: int) -> None:
        self._put(ERROR, value)
