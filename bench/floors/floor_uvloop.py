"""The uvloop floor for the request benchmarks (bench/bench_floors.py).

A responder in Python on uvloop that speaks the xenstore wire framing and
answers every request with a canned reply, keeping no store: what a Python
daemon on this event loop costs at least.  One ``data_received`` answers every
complete packet it got with one ``transport.write`` (the batching xsd does).
READ gets 31 bytes (xsbench checks the length), anything else ``OK\\0``, so the
floor only means something for READ/WRITE/RM loads (xsbench rw and mc:N).

    python bench/floors/floor_uvloop.py SOCKET_PATH
"""
import asyncio
import os
import struct
import sys

import uvloop

HEADER = struct.Struct("=IIII")      # type, req_id, tx_id, len (xs_wire.h xsd_sockmsg)
PAYLOAD_MAX = 4096
XS_READ = 2
READ_VALUE = b"0123456789abcdef0123456789abcde"
OK = b"OK\0"


class Responder(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buf = b""

    def data_received(self, data):
        buf = self.buf + data if self.buf else data
        at, replies = 0, []
        while len(buf) - at >= HEADER.size:
            kind, req_id, tx_id, length = HEADER.unpack_from(buf, at)
            if length > PAYLOAD_MAX:
                self.transport.close()
                return
            if len(buf) - at - HEADER.size < length:
                break
            body = READ_VALUE if kind == XS_READ else OK
            replies.append(HEADER.pack(kind, req_id, tx_id, len(body)))
            replies.append(body)
            at += HEADER.size + length
        self.buf = buf[at:]
        if replies:
            self.transport.write(b"".join(replies))


async def serve(path: str) -> None:
    if os.path.exists(path):
        os.unlink(path)
    server = await asyncio.get_running_loop().create_unix_server(Responder, path)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} SOCKET_PATH")
    uvloop.run(serve(sys.argv[1]))
