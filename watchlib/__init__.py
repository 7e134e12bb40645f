"""watchlib: xenstore subscriptions that other daemons can rely on.

    from watchlib import Client
    with Client() as c:
        c.write("/local/domain/0/data/x", b"1")
        sub = c.watch("/local/domain/*/device/vif/*/state", print, with_value=True)

Talks to any xenstored (xsd, C xenstored, oxenstored) over its Unix socket
through the shared wire codec ``xenstore_protocol``.  The API and the delivery
guarantees are written down in docs/watchlib.md.
"""
import importlib
import threading
from typing import TYPE_CHECKING

from xenstore_protocol import XenstoreError
from xenstore_protocol.perms import Perm

from .domains import DomainWatcher, domains   # light; the function shadows the module name

if TYPE_CHECKING:
    from .client import Client
    from .subscription import Subscription

# Imported on first use (PEP 562): the xenstore-* shims import watchlib.cli,
# which needs only watchlib.connection, and start in a fraction of the time.
_LAZY = {
    "Client": (".client", "Client"), "Transaction": (".client", "Transaction"),
    "Disconnected": (".connection", "Disconnected"),
    "MATCHER_BACKEND": (".patterns", "BACKEND"),
    "Event": (".subscription", "Event"), "LostEvents": (".subscription", "LostEvents"),
    "Resync": (".subscription", "Resync"), "Subscription": (".subscription", "Subscription"),
    "AsyncClient": (".aio", "AsyncClient"),
    "Mirror": (".mirror", "Mirror"), "AsyncMirror": (".mirror", "AsyncMirror"),
    "Added": (".mirror", "Added"), "Changed": (".mirror", "Changed"), "Removed": (".mirror", "Removed"),
}

__all__ = [
    "Added", "AsyncClient", "AsyncMirror", "Changed", "Mirror", "Removed", "Client", "Disconnected", "DomainWatcher", "Event", "LostEvents", "MATCHER_BACKEND",
    "Perm", "Resync", "Subscription", "Transaction", "XenstoreError", "default_client",
    "domains", "watch",
]

_default = None
_default_lock = threading.Lock()


def default_client() -> "Client":
    """The process-wide Client behind ``watchlib.watch`` (made on first use)."""
    global _default
    from .client import Client
    with _default_lock:
        if _default is None or _default._closed:
            _default = Client()
        return _default


def watch(pattern: str, callback, **kwargs) -> "Subscription":
    """``default_client().watch(pattern, callback, ...)``."""
    return default_client().watch(pattern, callback, **kwargs)


def __getattr__(name):
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module, __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'watchlib' has no attribute {name!r}")
