"""The uvloop floor for the request benchmarks (bench/bench_floors.py).

A responder in Python on uvloop that speaks the xenstore wire framing and
answers every request with a canned reply, keeping no store: what a Python
daemon on this event loop costs at least.  One ``data_received`` answers every
complete packet it got with one ``transport.write`` (the batching xsd does).

The canned replies have the shape and size of the real ones for every one-client
test of xsbench (../shared/anchors/xsbench.c: rw, dir, tx, watch:W):

- READ: 31 bytes (xsbench checks the length it wrote last);
- DIRECTORY: the listing of 1000 children named 0..999 (3890 bytes, the node
  xsbench dir lists and counts), whatever the path;
- TRANSACTION_START: a fresh transaction id; TRANSACTION_END and the rest: ``OK``;
- WATCH: ``OK``, then the watch's initial event (path and token echoed), as
  xenstored sends them; UNWATCH: ``OK``.

Watches are one table, path -> [(connection, token)], so that a WRITE outside a
transaction sends an event (the written path, the watch's token) to each
watch on that path or one of its ancestors: xsbench watch:W's client A waits for
the events of client B's writes.  It ignores everything else a daemon fires for
(MKDIR, RM, SET_PERMS, commits, special paths), a relative path's ancestors,
quotas and permissions; a repeated WATCH is one entry; a connection's watches go with it.

    python bench/floors/floor_uvloop.py SOCKET_PATH
"""
import asyncio
import itertools
import os
import struct
import sys

import uvloop

from xenstore_protocol.constants import Op

HEADER = struct.Struct("=IIII")      # type, req_id, tx_id, len (xs_wire.h xsd_sockmsg)
PAYLOAD_MAX = 4096
READ, DIRECTORY, WRITE = int(Op.READ), int(Op.DIRECTORY), int(Op.WRITE)
WATCH, UNWATCH, TX_START = int(Op.WATCH), int(Op.UNWATCH), int(Op.TRANSACTION_START)
WATCH_EVENT = int(Op.WATCH_EVENT)
READ_VALUE = b"0123456789abcdef0123456789abcde"
LISTING = b"".join(b"%d\0" % i for i in range(1000))
OK = b"OK\0"
CANNED = {READ: READ_VALUE, DIRECTORY: LISTING}

watches = {}                         # path -> [(Responder, token)]: the only state kept
tx_ids = itertools.count(1)


def event(path: bytes, token: bytes) -> bytes:
    body = path + b"\0" + token + b"\0"
    return HEADER.pack(WATCH_EVENT, 0, 0, len(body)) + body


class Responder(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buf = b""
        self.mine = set()                # (path, token) of this connection's watches

    def connection_lost(self, exc):
        for path, token in self.mine:
            self.forget(path, token)

    def forget(self, path, token):
        held = watches.get(path, [])
        if (self, token) in held:
            held.remove((self, token))
            if not held:
                del watches[path]

    def fire(self, path, replies):
        """An event for each watch on ``path`` or an ancestor; this connection's go after
        its replies so far, the others' straight to their sockets."""
        at = path
        while at:
            for conn, token in watches.get(at, ()):
                if conn is self:
                    replies.append(event(path, token))
                else:
                    conn.transport.write(event(path, token))
            cut = at.rfind(b"/")
            at = at[:cut] if cut > 0 else (b"/" if cut == 0 and at != b"/" else b"")

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
            body = CANNED.get(kind, OK)
            if kind == TX_START:
                body = b"%d\0" % next(tx_ids)
            replies.append(HEADER.pack(kind, req_id, tx_id, len(body)))
            replies.append(body)
            if kind == WRITE and watches and not tx_id:
                payload = buf[at + HEADER.size:at + HEADER.size + length]
                self.fire(payload.split(b"\0", 1)[0], replies)
            elif kind == WATCH or kind == UNWATCH:
                path, _, rest = buf[at + HEADER.size:at + HEADER.size + length].partition(b"\0")
                token = rest.split(b"\0", 1)[0]
                if kind == WATCH:
                    if (path, token) not in self.mine:      # a repeat: OK, no second entry
                        watches.setdefault(path, []).append((self, token))
                        self.mine.add((path, token))
                    replies.append(event(path, token))
                elif (path, token) in self.mine:
                    self.mine.remove((path, token))
                    self.forget(path, token)
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
