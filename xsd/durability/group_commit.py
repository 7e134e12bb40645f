"""Group commit's policy: whether a scheduled flush should wait one more loop turn.

The request pump (``xsd/transport/pump.py``) schedules one flush per loop
turn, so that one journal write and one fsync cover every transport's batch
of that turn; this module decides whether to wait a turn longer.
"""
import time

MAX_HOLD_SECONDS = 0.002          # hold_back never delays a commit longer than this
MIN_FSYNC_HELD = 50e-6            # a shorter fsync (tmpfs: ~1 us) is not worth a held turn


class GroupCommit:
    def __init__(self, journal):
        self.journal = journal        # persist.Persistence: its fsync mode and fsync time
        self._last_batches = 0        # transports' batches in the last commit
        self._hold_since = None

    def cheap(self) -> bool:
        """Is a commit cheap enough not to be worth sharing?  No fsync per batch (``--fsync``
        interval or never, or a state directory on tmpfs: persist.py ``syncs_each_batch``),
        or one shorter than ``MIN_FSYNC_HELD``: then a lone client's batch is committed and
        answered in the callback that brought it (pump.py ``serve_bytes``), where a turn of
        the loop for the commit costs more than it."""
        journal = self.journal
        return not journal.syncs_each_batch or journal.fsync_seconds < MIN_FSYNC_HELD

    def hold_back(self, batches: int) -> bool:
        """Should the scheduled flush wait one more loop turn?  (``--fsync batch`` only.)

        Synchronous clients come back one by one after their replies; an
        fsync started on the first of them serves one client where it could
        have served all.  So while fewer transports have handed over a batch
        than did for the last commit, wait a turn (a poll that does not
        block), for at most half an fsync: a client that does not come back
        costs that much latency once, then the expectation follows it down.
        (PostgreSQL's commit_delay/commit_siblings, made adaptive.)  Not where an fsync
        takes less than ``MIN_FSYNC_HELD`` (a state directory on tmpfs): there the held
        turn, a poll and a callback, costs more than the fsync it saves, and every reply
        of the batch waits for it (mc:8 on tmpfs, docs/benchmarks.md).
        """
        if self.cheap():
            return False
        if batches < self._last_batches:
            now = time.monotonic()
            if self._hold_since is None:
                self._hold_since = now
            if now - self._hold_since < min(self.journal.fsync_seconds / 2, MAX_HOLD_SECONDS):
                return True
        self._last_batches = batches
        self._hold_since = None
        return False
