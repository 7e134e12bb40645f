"""The socket connections' C poller (xsd/_native/poller.h) on the event loop.

A socket connection registers with the poller at ``connection_made``: from then
on the poller reads it (its transport's own reading stays paused), and the
event loop calls ``_ready`` once whenever any registered socket is readable.
One crossing (``Poller.serve``) reads each ready socket, and while the
connection is *direct* answers and writes its batch in C; it returns to Python
at the first connection whose batch needs Python, which the connection takes
as ``data_received`` would have (``Connection.polled``, ``unsent``,
``ended``), then the crossing goes on with the rest.  Loaded only over the C
node store (the engine is the poller's).

A connection is direct only while nothing of its client waits in Python
(``Connection.go_direct`` checks it after every batch Python handled, and
after a drain); the session tells the connection as soon as output starts
waiting or the client is paused (``Session.poller_hold``), and a change of
what the C path must know of every session moves the epoch
(``FastPath.state_changed``), which ends every connection's permission at once.
"""
import itertools
import logging

from .._native.poller import BYTES, COMMIT, RUN, UNSENT, Poller
from ..core.stats import SAMPLE_EVERY

log = logging.getLogger("xsd.poller")


class SocketPoller:
    def __init__(self, daemon, pump, loop):
        fast = daemon.fastpath
        self.daemon = daemon
        self.pump = pump
        self.native = Poller(fast.engine, daemon.store.handle)
        # A journal must write a change before a reply shows it: such replies wait in C
        # for the commit, which releases them (with, journaling or not, watch events a
        # watcher's socket did not take).
        if daemon.listeners:
            self.native.journaling(True)
        daemon.after_commit.append(self.release)
        self.native.epoch(fast.epoch)
        fast.poller = self.native
        self.connections = {}           # id -> Connection
        # --metrics: the poller times its share of requests, one count with Python's.
        self.stats = daemon.stats if daemon.stats.timed else None
        self._after_flush = []          # connections to be made direct once output moved
        daemon.after_flush.append(self._flushed)
        self._ids = itertools.count(1)
        self.loop = loop
        loop.add_reader(self.native.fd, self._ready)

    def add(self, connection, fd: int):
        """Register ``connection``'s socket: -> (its id, its pconn)."""
        ident = next(self._ids)
        pconn = self.native.add(connection.session.native, fd, ident)
        self.connections[ident] = connection
        return ident, pconn

    def remove(self, ident: int) -> None:
        self.connections.pop(ident, None)

    def _ready(self) -> None:
        """The event loop: some socket is readable."""
        if self.stats is None:
            self._serve(self.native.serve)
            return
        self._serve(self._serve_timed)
        for op, seconds in self.native.samples():
            self.stats.observe(op, seconds)

    def _serve_timed(self, poll: bool):
        """``Poller.serve`` with --metrics: one count of requests until the next sample,
        Python's (Stats.countdown), carried on by the poller's runs in between."""
        native, stats = self.native, self.stats
        native.sample(SAMPLE_EVERY, stats.countdown)
        result = native.serve(poll)
        stats.countdown = native.countdown()
        return result

    def _serve(self, serve) -> None:
        connections = self.connections
        kind, ident, data, extra, held, last = serve(True)
        while kind:
            if kind == COMMIT:
                # Journaled batches' replies wait in C: one commit for them all, as for
                # the transports' batches of this turn (group commit), then release.
                self.pump.commit_held(extra)
                return                  # the turn's end
            if held:
                self.daemon.flush()     # its replies waiting for the commit go out first
            connection = connections.get(ident)
            if connection is not None:
                try:
                    if kind == BYTES:
                        connection.polled(data)
                    elif kind == RUN:
                        connection.polled(data, extra)
                    elif kind == UNSENT:
                        connection.unsent(extra)
                    else:
                        connection.ended()
                except Exception:
                    # As the event loop treats a protocol's failing data_received.
                    log.exception("%s: internal error serving its requests; closing",
                                  connection.name)
                    connection.transport.abort()
            if last:
                return
            kind, ident, data, extra, held, last = serve(False)

    def after_flush(self, connection) -> None:
        """``connection`` may be direct once the daemon's flush has written its output."""
        self._after_flush.append(connection)

    def _flushed(self) -> None:
        """``Daemon.after_flush``."""
        waiting = self._after_flush
        if waiting:
            self._after_flush = []
            for connection in waiting:
                if connection.pconn is not None:
                    connection.go_direct()

    def release(self) -> None:
        """``Daemon.after_commit``: the replies waiting for the commit go out, before any
        other output of this flush (so before what was queued after them)."""
        for ident, journaled, rest in self.native.release():
            connection = self.connections.get(ident)
            if connection is None:
                continue
            if journaled:
                self.pump.count_written(connection.session, journaled)
            if rest:
                connection.unsent(rest)

    def close(self) -> None:
        self.loop.remove_reader(self.native.fd)
        self.daemon.fastpath.poller = None
        if self.release in self.daemon.after_commit:
            self.daemon.after_commit.remove(self.release)
        if self._flushed in self.daemon.after_flush:
            self.daemon.after_flush.remove(self._flushed)

