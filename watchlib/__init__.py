"""watchlib: xenstore subscriptions that other daemons can rely on.

    from watchlib import Client
    with Client() as c:
        c.write("/local/domain/0/data/x", b"1")
        sub = c.watch("/local/domain/*/device/vif/*/state", print, with_value=True)

Talks to any xenstored (xsd, C xenstored, oxenstored) over its Unix socket
through the shared wire codec ``xenstore_protocol``.  The API and the delivery
guarantees are written down in docs/watchlib.md.
"""
import threading

from xenstore_protocol import XenstoreError
from xenstore_protocol.perms import Perm

from .client import Client, Transaction
from .connection import Disconnected
from .domains import DomainWatcher, domains   # the function shadows the module name
from .patterns import BACKEND as MATCHER_BACKEND
from .subscription import Event, LostEvents, Resync, Subscription

__all__ = [
    "AsyncClient", "Client", "Disconnected", "DomainWatcher", "Event", "LostEvents", "MATCHER_BACKEND",
    "Perm", "Resync", "Subscription", "Transaction", "XenstoreError", "default_client",
    "domains", "watch",
]

_default = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """The process-wide Client behind ``watchlib.watch`` (made on first use)."""
    global _default
    with _default_lock:
        if _default is None or _default._closed:
            _default = Client()
        return _default


def watch(pattern: str, callback, **kwargs) -> Subscription:
    """``default_client().watch(pattern, callback, ...)``."""
    return default_client().watch(pattern, callback, **kwargs)


def __getattr__(name):
    # Imported lazily: the CLI shims do not need asyncio.
    if name == "AsyncClient":
        from .aio import AsyncClient
        return AsyncClient
    raise AttributeError(f"module 'watchlib' has no attribute {name!r}")
