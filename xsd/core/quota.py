"""Per-domain limits, with C xenstored's defaults (tools/xenstored/core.c).

They bind unprivileged domains only; dom0 and socket connections are exempt,
as in xenstored.  ``0`` disables a limit (docs/misc/xenstore.txt, SET_QUOTA).
"""
from xenstore_protocol import XenstoreError

DEFAULTS = {
    "nodes": 1000,              # quota_nb_entry_per_domain
    "watches": 128,             # quota_nb_watch_per_domain
    "transactions": 10,         # quota_max_transaction
    "node-size": 2048,          # quota_max_entry_size: bytes of one value
    "permissions": 5,           # quota_nb_perms_per_node
    "outstanding": 20,          # quota_req_outstanding: unanswered requests
    "transaction-nodes": 1024,  # quota_trans_nodes: nodes one transaction touches
}


class Quotas:
    """Global values (defaults for new domains) plus per-domain overrides."""

    def __init__(self, overrides=None):
        self.values = dict(DEFAULTS)
        for name, value in (overrides or {}).items():
            self.set(name, value)
        self.per_domain = {}       # domid -> {name: value}

    @staticmethod
    def _check_name(name: str) -> None:
        if name not in DEFAULTS:
            raise XenstoreError("EINVAL", f"unknown quota {name!r}")

    def set(self, name: str, value: int, domid=None) -> None:
        self._check_name(name)
        if value < 0:
            raise XenstoreError("EINVAL", "negative quota")
        if domid is None:
            self.values[name] = value
        else:
            self.per_domain.setdefault(domid, {})[name] = value

    def get(self, name: str, domid=None) -> int:
        self._check_name(name)
        if domid is not None:
            return self.per_domain.get(domid, {}).get(name, self.values[name])
        return self.values[name]

    def forget(self, domid: int) -> None:
        """A released domain's overrides go with it (XSA-322: a reused domid inherits nothing)."""
        self.per_domain.pop(domid, None)

    def limit(self, session, name: str):
        """The limit binding ``session``, or None when none applies."""
        if session.privileged:
            return None
        value = self.get(name, session.domid)
        return value or None

    def check(self, session, name: str, would_be: int, error: str) -> None:
        """Raise ``error`` when ``would_be`` exceeds the caller's ``name`` quota."""
        limit = self.limit(session, name)
        if limit is not None and would_be > limit:
            session.counters.refuse(name)       # stats.py: summarised in the log, shown by top
            raise XenstoreError(error, f"quota {name} ({limit}) exceeded")
