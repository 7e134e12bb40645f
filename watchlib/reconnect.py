"""How long to wait between attempts to reach a daemon that went away."""
import random


class Backoff:
    """Exponential backoff with jitter: 50 ms doubling up to 2 s (defaults).

    The jitter (up to a quarter of the delay) keeps a fleet of clients from
    reconnecting in lock step after a daemon restart.
    """

    def __init__(self, initial=0.05, maximum=2.0, factor=2.0):
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self._next = initial

    def reset(self):
        self._next = self.initial

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self.maximum, self._next * self.factor)
        return delay * (1 + random.random() / 4)
