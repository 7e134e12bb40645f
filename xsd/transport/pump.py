"""The request pump: one for every transport (socket connections and guest rings).

It feeds a client's request packets to the daemon, stops at the first one
after which the client's session is paused (its output over the high-water
mark) or closed, and keeps the rest for later (``serve`` / ``drain``).  And
it decides when the daemon flushes (``request_flush``): in memory at once;
journaling, once every transport's callbacks of this loop turn have run, so
that one journal write and one fsync cover them all (group commit), waiting
a turn longer while the durability's policy says so (``hold_back``,
``xsd/durability/group_commit.py``).
"""

# Output gathered from one batch of requests before it is handed over early:
# a read of 256 KiB of small requests may ask for 50 MiB of replies.
FLUSH_AT = 64 * 1024


class RequestPump:
    def __init__(self, daemon, loop=None, policy=None):
        self.daemon = daemon
        self.loop = loop              # call_soon for group commit; None: flush at once
        self.policy = policy          # has hold_back(batches); None: no group commit
        self._flush_scheduled = False
        self._batches = 0             # transports' batches waiting for the scheduled flush

    # -- requests -----------------------------------------------------------------
    def serve(self, session, packets, queue) -> None:
        """Handle ``packets`` in order; once ``session`` is paused or closed, the rest wait
        in ``queue`` (a deque the transport drains with ``drain`` when it can write again)."""
        daemon = self.daemon
        handle = daemon.handle
        for i, packet in enumerate(packets):
            handle(session, packet)
            if session.out_bytes > FLUSH_AT:
                daemon.flush()        # lets the transport push back mid-batch
            if session.paused or session.closed:
                queue.extend(packets[i + 1:])
                return

    def drain(self, session, queue, flush_each: bool = False) -> None:
        """Handle what waits in ``queue`` while ``session`` can take output."""
        daemon = self.daemon
        handle = daemon.handle
        while queue and not (session.paused or session.closed):
            handle(session, queue.popleft())
            if flush_each or session.out_bytes > FLUSH_AT:
                daemon.flush()

    # -- group commit ---------------------------------------------------------------
    def request_flush(self) -> None:
        """A transport handed over its batch: flush now, or once this loop turn is done."""
        if self.policy is None or self.loop is None:
            self.daemon.flush()
            return
        self._batches += 1
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        if self.policy.hold_back(self._batches):
            self.loop.call_soon(self._scheduled_flush)   # one more turn: more clients are coming
            return
        self._flush_scheduled = False
        self._batches = 0
        self.daemon.flush()
