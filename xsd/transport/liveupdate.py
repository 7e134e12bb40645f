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

from ..durability import snapshot
from ..durability.journal import Codec, StateError
from ..durability.state import meta_state

log = logging.getLogger("xsd.liveupdate")

STATE_NAME = "xsd.liveupdate"
HEADER = struct.Struct("<4sII")
MAGIC = b"XSDL"
VERSION = 1
PREFLIGHT = "import xsd.transport.server, xsd.durability.persist, xsd.transport.liveupdate"
DRAIN_SECONDS = 1.0


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
    listeners = server.inheritable_listeners()   # duplicated: they outlive stop_listening()
    server.stop_listening()
    server.pause_clients()
    d.flush()
    if d.persist is not None:
        d.persist.sync()             # on disk whatever --fsync says
    deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline and server.output_waiting():
        await asyncio.sleep(0.01)
    try:
        guests = server.guests.export_state() if server.guests is not None else []
        path = _write_state(server, listeners, guests)
        _exec(server.config, path)
    except Exception:
        log.exception("live update failed before exec; serving on")
        await server.resume_clients(listeners)
        server.live_update_task = None


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
        tree = d.store.freeze()
        try:
            for record in snapshot.records(Codec(), tree, meta_state(d)):
                f.write(record)
        finally:
            d.store.thaw()
    os.rename(tmp, path)
    log.info("live update: state saved to %s (%d nodes, %d guests)", path, len(d.store),
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
        saved = self.runtime["guests"]
        if server.guests is not None:
            server.guests.adopt_state(saved)
        elif saved:
            log.error("live update: %d guest sessions lost: no guest transport", len(saved))
        log.info("live update: restored from pid %d: %d nodes, %d domains, %d guest sessions",
                 self.runtime["pid"], len(d.store), len(d.domains.domains), len(saved))
