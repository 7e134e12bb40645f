"""Live update: hand the state, the listening sockets and the guests to a new process.

As cxenstored's live update, the daemon replaces itself with ``execve``: the
pid stays (a service manager keeps tracking it), the listening sockets are
inherited, so a client connecting meanwhile waits in the socket's backlog
and is accepted by the new program: never ECONNREFUSED, never a missing
socket file.  Socket clients see their connection close (watchlib
reconnects and re-watches); guest rings stay mapped and their sessions
(watches, pending output, requests read but not answered) move across.

Sequence (``start``; CONTROL ``live-update`` or SIGUSR1):

1. Pre-flight, while still serving: a child interpreter imports the daemon's
   modules, so a broken installation is found before anything stops.
2. Freeze: stop accepting (the listening descriptors are duplicated first
   and stay open), stop reading every client, flush (the journal commit
   included), give replies up to a second to drain.
3. Write the state file ``<state dir>/xsd.liveupdate``: a JSON header
   (listening descriptors, guest sessions) and the store and daemon state
   as snapshot records (``snapshot.py``).
4. ``execve`` the same command line plus ``--live-restore <file>``.  If
   that fails, serving resumes on the same sockets.

The new process loads that file instead of snapshot and journal (it does
not need to be durable: the journal already is), adopts the descriptors;
``Guests`` re-attaches each introduced domain's ring, and each guest gets its
session back.  State-file layout: ``b"XSDL"`` | version u32 |
JSON length u32 | JSON | snapshot records.
"""
import asyncio
import json
import logging
import os
import signal
import socket
import struct
import sys
import time

from xenstore_protocol import Packet

from ..durability import persist, snapshot
from ..durability.journal import Codec, StateError
from ..core import ops
from ..core.transactions import Transaction

log = logging.getLogger("xsd.liveupdate")

STATE_NAME = "xsd.liveupdate"
HEADER = struct.Struct("<4sII")
MAGIC = b"XSDL"
VERSION = 1
PREFLIGHT = "import xsd.transport.server, xsd.durability.persist, xsd.transport.liveupdate"
DRAIN_SECONDS = 1.0


# -- sessions ---------------------------------------------------------------------

def session_state(session) -> dict:
    """What a client's session holds beyond the store: watches, transactions, pending output."""
    return {
        "domid": session.domid, "privileged": session.privileged, "read_only": session.read_only,
        "target": session.target, "name": session.name, "next_tx_id": session.next_tx_id,
        # Registration order is firing order: ids grow with it.
        "watches": [[w.path, w.token.hex(), w.relative]
                    for w in sorted(session.watches.values(), key=lambda w: w.id)],
        "transactions": sorted(session.transactions),
        "output": b"".join([*session.out, *session.backlog]).hex(),
        "events_dropped": session.events_dropped,
    }


def restore_session(d, session, state: dict) -> None:
    """Give ``session`` (freshly opened for the same client) what ``session_state`` saved.

    Open transactions cannot move (their overlays are not saved): each comes
    back doomed, so its TRANSACTION_END answers EAGAIN and the client retries,
    which every xenstore client does (C xenstored ends them the same way).
    """
    session.target = state["target"]
    session.next_tx_id = state["next_tx_id"]
    session.events_dropped = state["events_dropped"]
    for path, token, relative in state["watches"]:
        token = bytes.fromhex(token)
        if (path, token) not in session.watches:     # a guest's may be back from the journal
            d.watches.add(session, path, token, relative)
    for tx_id in state["transactions"]:
        session.transactions[tx_id] = Transaction.doomed(
            d.store, tx_id, ops.transaction_node_limit(d, session))
    output = bytes.fromhex(state["output"])
    if output:
        session.send(output)


# -- the old process ------------------------------------------------------------------

def start(server) -> str:
    """Begin a live update; ``"OK"``, or ``"BUSY"`` if one is under way."""
    if server.live_update_task is not None:
        return "BUSY"
    loop = asyncio.get_event_loop()
    server.live_update_task = loop.create_task(_run(server))
    return "OK"


async def _run(server) -> None:
    try:
        await _preflight()
    except Exception as err:
        log.error("live update abandoned, still serving: %s", err)
        server.live_update_task = None
        return
    log.info("live update: pre-flight passed; freezing")
    d = server.daemon
    listeners = []
    for server_obj, (path, read_only) in zip(server.servers, server.listening):
        fd = os.dup(server_obj.sockets[0].fileno())   # the socket outlives server.close()
        os.set_inheritable(fd, True)
        listeners.append({"path": path, "read_only": read_only, "fd": fd})
    for server_obj in server.servers:
        server_obj.close()
    connections = [c for c in list(server.connections) if c.transport is not None]
    for conn in connections:
        if not conn.transport.is_closing():
            conn.transport.pause_reading()
    _stop_guests(server)
    d.flush()
    if d.persist is not None:
        d.persist.sync()             # on disk whatever --fsync says
    deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline and any(
            not c.transport.is_closing() and c.transport.get_write_buffer_size()
            for c in connections):
        await asyncio.sleep(0.01)
    try:
        path = _write_state(server, listeners, _save_guests(server))
        _exec(server.config, path)
    except Exception:
        log.exception("live update failed before exec; serving on")
        await _resume(server, listeners, connections)


async def _preflight() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PREFLIGHT, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    except asyncio.TimeoutError:
        proc.kill()
        raise RuntimeError("pre-flight import timed out") from None
    if proc.returncode:
        raise RuntimeError(f"the new program does not import: {err.decode(errors='replace')[-2000:]}")


def _stop_guests(server) -> None:
    """No more guest requests: their event channel is no longer watched."""
    guests = server.guests
    if guests is not None:
        try:
            guests.loop.remove_reader(guests.evtchn.fileno())
        except Exception:
            log.exception("live update: stopping guest event channels")


def _save_guests(server) -> list:
    """The saved state of each guest connection.

    Reads GuestConnection's fields (guest.py): what was read from the ring
    and not yet answered (``queue`` and the decoder's partial packet) and
    what waits for room in the ring (``out``) move with the session.
    """
    guests = server.guests
    if guests is None:
        return []
    saved = []
    for domid, conn in guests.by_domid.items():
        if conn.closed or conn.broken:
            continue
        conn.ack(everything=True)       # what is not yet handled moves with the state, below
        pending_input = b"".join(Packet(*p).encode() for p in conn.queue)
        pending_input += bytes(conn.decoder._buf)      # a partial packet, exactly as read
        saved.append({"domid": domid, "session": session_state(conn.session),
                      "out": bytes(conn.out).hex(), "input": pending_input.hex()})
    return saved


def _state_path(config) -> str:
    return os.path.join(config.state_dir or config.rundir, STATE_NAME)


def _write_state(server, listeners: list, guests: list) -> str:
    d = server.daemon
    runtime = {"pid": os.getpid(), "listeners": listeners, "guests": guests,
               "saved_at": time.time()}
    header_json = json.dumps(runtime).encode("ascii")
    path = _state_path(server.config)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(HEADER.pack(MAGIC, VERSION, len(header_json)))
        f.write(header_json)
        for record in snapshot.records(Codec(), d.store, persist.meta_state(d)):
            f.write(record)
    os.rename(tmp, path)
    log.info("live update: state saved to %s (%d nodes, %d guests)", path, len(d.store.nodes),
             len(guests))
    return path


def _exec(config, state_path: str) -> None:
    argv = list(config.argv)
    for i, arg in enumerate(argv):                # a previous update's option
        if arg == "--live-restore":
            del argv[i:i + 2]
            break
        if arg.startswith("--live-restore="):
            del argv[i]
            break
    args = [sys.executable, "-m", "xsd", *argv, "--live-restore", state_path]
    log.info("live update: exec %s", " ".join(args))
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    os.execv(sys.executable, args)


async def _resume(server, listeners: list, connections: list) -> None:
    loop = asyncio.get_event_loop()
    server.servers.clear()
    for item in listeners:
        sock = socket.socket(fileno=item["fd"])
        server.servers.append(await loop.create_unix_server(
            server._factory(item["read_only"]), sock=sock, backlog=512))
    for conn in connections:
        if not conn.transport.is_closing():
            conn.transport.resume_reading()
    guests = server.guests
    if guests is not None:
        guests.loop.add_reader(guests.evtchn.fileno(), guests._on_events)
    server.live_update_task = None


# -- the new process ------------------------------------------------------------------

class Handoff:
    """A state file read by the new process: ``data``/``offset`` for persist, ``runtime`` for the server."""

    def __init__(self, path: str):
        self.name = path
        try:
            with open(path, "rb") as f:
                self.data = f.read()
        except OSError as err:
            raise StateError(f"live update state {path}: {err}") from None
        if len(self.data) < HEADER.size:
            raise StateError(f"{path}: truncated live update state")
        magic, version, size = HEADER.unpack_from(self.data)
        if magic != MAGIC or version != VERSION:
            raise StateError(f"{path}: not a live update state file of this version")
        self.runtime = json.loads(self.data[HEADER.size:HEADER.size + size])
        self.offset = HEADER.size + size
        os.unlink(path)           # a restart after this one starts from the journal, not from here

    def listener(self, path: str):
        """The inherited listening socket for ``path``, or None."""
        for item in self.runtime["listeners"]:
            if item["path"] == path:
                return socket.socket(fileno=item["fd"])
        return None

    def restore_guests(self, server) -> None:
        """Give each guest connection its saved session back.

        ``Guests`` (guest.py) has already re-attached the ring of every domain
        in the restored table, with a fresh session and its first kick queued.
        """
        d = server.daemon
        guests = server.guests
        for item in self.runtime["guests"]:
            conn = guests.by_domid.get(item["domid"]) if guests is not None else None
            if conn is None:
                log.error("live update: domain %d had a connection, now none: its session is lost",
                          item["domid"])
                continue
            restore_session(d, conn.session, item["session"])
            conn.out[:0] = bytes.fromhex(item["out"])
            conn.queue.extend(conn.decoder.feed(bytes.fromhex(item["input"])))
        log.info("live update: restored from pid %d: %d nodes, %d domains, %d guest sessions",
                 self.runtime["pid"], len(d.store.nodes), len(d.domains.domains),
                 len(self.runtime["guests"]))
