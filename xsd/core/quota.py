"""Per-domain limits, with C xenstored's names, defaults and texts (Xen 4.17, ``xenstore-control
quota``).

They bind unprivileged domains only, as in xenstored, except ``path-max``, which C xenstored
applies to every caller, dom0 included.  ``0`` disables a limit (docs/misc/xenstore.txt,
SET_QUOTA).  ``memory`` charges what a domain's nodes and watches take, by the formulas
below; past its soft value one warning is logged, past its hard value ENOMEM.

One table for every user: ``QUOTAS`` (names in C's order, defaults, the descriptions
``CONTROL quota`` prints), ``SOFT_QUOTAS``, and ``parse_assignment`` for a command line's
``name=value`` (C xenstored's ``-Q``/``-q``).
"""
import logging

from xenstore_protocol import XenstoreError

log = logging.getLogger("xsd.quota")

# name: (default, C xenstored's description), in the order C prints them.
QUOTAS = {
    "nodes": (1000, "Nodes per domain"),
    "watches": (128, "Watches per domain"),
    "transactions": (10, "Transactions per domain"),
    "outstanding": (20, "Outstanding requests per domain"),
    "transaction-nodes": (1024, "Max. number of accessed nodes per transaction"),
    "memory": (2621440, "Total Xenstore memory per domain (error level)"),
    "node-size": (2048, "Max. size of a node"),
    "path-max": (2048, "Max. length of a node path"),
    "permissions": (5, "Max. number of permissions per node"),
}
SOFT_QUOTAS = {
    "memory": (2097152, "Total Xenstore memory per domain (warning level)"),
}
DEFAULTS = {name: default for name, (default, _) in QUOTAS.items()}
SOFT_DEFAULTS = {name: default for name, (default, _) in SOFT_QUOTAS.items()}
# What ``CONTROL quota <domid>`` reports as used, in C's order.
USAGE_NAMES = ("nodes", "watches", "transactions", "outstanding", "memory")
VALUE_MAX = 0xFFFFFFFF


def parse_assignment(text: str, soft: bool = False) -> tuple:
    """``"nodes=500"`` -> ``("nodes", 500)``; ValueError with a one-line reason otherwise."""
    table = SOFT_QUOTAS if soft else QUOTAS
    name, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"{text!r}: expected <name>=<value>")
    if name not in table:
        raise ValueError(f"unknown {'soft ' if soft else ''}quota {name!r} "
                         f"(known: {', '.join(table)})")
    if not value.isdigit() or not value.isascii() or int(value) > VALUE_MAX:
        raise ValueError(f"{text!r}: the value must be a decimal number up to {VALUE_MAX}")
    return name, int(value)


def memory_of_node(path: str, value: bytes, perms: tuple) -> int:
    """Bytes a node is charged (C xenstored charges its database record: a header, the
    permissions, the value and the children names; here: the node's path, value, 8 per
    permission and a fixed 40 for the record, a close approximation)."""
    return 40 + len(path) + len(value) + 8 * len(perms)


def memory_of_watch(text_bytes: int) -> int:
    """Bytes a watch is charged: its path and token (``text_bytes``, their lengths added)
    plus a fixed 40 for the record."""
    return 40 + text_bytes


def memory_of_watches(count: int, text_bytes: int) -> int:
    """Bytes ``count`` watches are charged, ``text_bytes`` their paths' and tokens' lengths
    added: memory_of_watch summed over them."""
    return memory_of_watch(0) * count + text_bytes


class Quotas:
    """Global values (defaults for new domains) plus per-domain overrides; soft values."""

    def __init__(self, overrides=None, soft_overrides=None):
        self.values = dict(DEFAULTS)
        self.soft = dict(SOFT_DEFAULTS)
        for name, value in (overrides or {}).items():
            self.set(name, value)
        for name, value in (soft_overrides or {}).items():
            self.set_soft(name, value)
        self.per_domain = {}       # domid -> {name: value}
        self.soft_warned = set()   # domains over their soft memory quota, warned once
        # () -> None, told whenever soft_warned changes: the C request path answers only
        # what leaves it unchanged, and must relearn it (fastpath.py).
        self.warned_changed = None

    @staticmethod
    def _check_name(name: str, table=QUOTAS) -> None:
        if name not in table:
            raise XenstoreError("EINVAL", f"unknown quota {name!r}")

    @staticmethod
    def _check_value(value: int) -> None:
        if not 0 <= value <= VALUE_MAX:
            raise XenstoreError("EINVAL", f"quota value {value} out of range")

    def set(self, name: str, value: int, domid=None) -> None:
        self._check_name(name)
        self._check_value(value)
        if domid is None:
            self.values[name] = value
        else:
            self.per_domain.setdefault(domid, {})[name] = value

    def set_soft(self, name: str, value: int) -> None:
        self._check_name(name, SOFT_QUOTAS)
        self._check_value(value)
        self.soft[name] = value

    def get(self, name: str, domid=None) -> int:
        self._check_name(name)
        return self._value(name, domid)

    def _value(self, name: str, domid) -> int:
        """``get`` for a name known to be a quota (the request path's callers): no check,
        no dict made per call."""
        overrides = self.per_domain.get(domid) if domid is not None else None
        if overrides:
            return overrides.get(name, self.values[name])
        return self.values[name]

    def forget(self, domid: int) -> None:
        """A released domain's overrides go with it (XSA-322: a reused domid inherits nothing)."""
        self.per_domain.pop(domid, None)
        self._unwarn(domid)

    def limit(self, session, name: str):
        """The limit binding ``session``, or None when none applies."""
        if session.privileged:
            return None
        return self._value(name, session.domid) or None

    def check(self, session, name: str, would_be: int, error: str) -> None:
        """Raise ``error`` when ``would_be`` exceeds the caller's ``name`` quota."""
        limit = self.limit(session, name)
        if limit is not None and would_be > limit:
            session.counters.refuse(name)       # stats.py: summarised in the log, shown by top
            raise XenstoreError(error, f"quota {name} ({limit}) exceeded")

    def check_memory(self, session, would_be: int) -> None:
        """C xenstored's domain_memory_add: past the soft value a warning (once, until the
        domain is back under it), past the hard value ENOMEM."""
        if session.privileged:
            return
        soft, domid = self.soft["memory"], session.domid
        if soft and would_be > soft:
            if domid not in self.soft_warned:
                self.soft_warned.add(domid)
                log.warning("dom%d: %d bytes of xenstore memory, over the soft quota %d",
                            domid, would_be, soft)
                if self.warned_changed is not None:
                    self.warned_changed()
        else:
            self._unwarn(domid)
        self.check(session, "memory", would_be, "ENOMEM")

    def _unwarn(self, domid: int) -> None:
        if domid in self.soft_warned:
            self.soft_warned.discard(domid)
            if self.warned_changed is not None:
                self.warned_changed()

    def path_max(self, domid: int) -> int:
        """The path-max quota for a caller in ``domid`` (all callers, dom0 too); 0: none."""
        return self._value("path-max", domid)

    # -- CONTROL quota texts, as C xenstored prints them ------------------------
    def settings_text(self, soft: bool = False) -> str:
        table, values = (SOFT_QUOTAS, self.soft) if soft else (QUOTAS, self.values)
        return "Quota settings:\n" + "".join(
            f"{name:<17}: {values[name]:8d} {text}\n" for name, (_, text) in table.items())


def usage_text(domid: int, usage: dict) -> str:
    return f"Domain {domid}:\n" + "".join(
        f"{name:<16}: {usage.get(name, 0):8d}\n" for name in USAGE_NAMES)
