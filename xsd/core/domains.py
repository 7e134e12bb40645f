"""The domain table: which guests xenstored has been introduced to.

Here a domain is bookkeeping (domid, ring mfn, event channel, target,
features).  Serving a guest over its ring page plugs in through
``DomainTable.on_introduce`` / ``on_release`` hooks, so the transport can
grow without touching the protocol code.
"""
from xenstore_protocol import XenstoreError

DOMID_FIRST_RESERVED = 0x7FF0     # xen.h: DOMID_SELF and friends start here


U32_MAX = 0xFFFFFFFF
U64_MAX = 0xFFFFFFFFFFFFFFFF


def decimal(raw: bytes, limit: int = U32_MAX) -> int:
    """A numeric wire field: ASCII decimal digits only, at most ``limit``; else EINVAL.

    Both Xen daemons parse these with C's atoi, so "abc", "" and "4294967296" quietly become
    0 (for SET_QUOTA: "unlimited") and "-1" becomes 4294967295; we refuse them instead
    (docs/compatibility.md).  libxenstore only ever sends plain decimal numbers.
    """
    if not raw or len(raw) > 20 or not raw.isdigit():
        raise XenstoreError("EINVAL", f"not a decimal number: {raw[:24]!r}")
    value = int(raw)
    if value > limit:
        raise XenstoreError("EINVAL", f"number out of range: {value}")
    return value


class Domain:
    __slots__ = ("domid", "mfn", "port", "target", "shutdown_seen", "features", "uuid")

    def __init__(self, domid: int, mfn: int, port: int, features: int):
        self.domid = domid
        self.mfn = mfn
        self.port = port
        self.target = None
        self.shutdown_seen = False   # @releaseDomain already fired for a shutdown (RESUME clears)
        self.features = features
        self.uuid = None             # the hypervisor's, at INTRODUCE; saved, so a restart can
                                     # tell the same domain from a new one on the same domid


class DomainTable:
    """Introduced domains.  Dom0 counts as introduced from the start."""

    def __init__(self, supported_features: int = 0):
        self.domains = {}
        self.supported_features = supported_features
        self.pending_features = {}   # SET_FEATURE before INTRODUCE
        self.on_introduce = []       # callbacks(domain)
        self.on_release = []         # callbacks(domid)

    def is_introduced(self, domid: int) -> bool:
        return domid == 0 or domid in self.domains

    def get(self, domid: int):
        return self.domains.get(domid)

    def introduce(self, domid: int, mfn: int, port: int) -> bool:
        """True when the domain is new (then @introduceDomain fires)."""
        if domid == 0 or domid >= DOMID_FIRST_RESERVED:
            raise XenstoreError("EINVAL", f"cannot introduce domain {domid}")
        known = self.domains.get(domid)
        if known is not None:
            return False           # re-introduction: OK, nothing changes (C xenstored)
        had_pending = domid in self.pending_features
        features = self.pending_features.pop(domid, self.supported_features)
        domain = Domain(domid, mfn, port, features)
        self.domains[domid] = domain
        try:
            for hook in self.on_introduce:
                hook(domain)
        except BaseException:
            # A transport that cannot serve the domain (ring not mappable) refuses it: undone.
            del self.domains[domid]
            if had_pending:
                self.pending_features[domid] = features
            raise
        return True

    def release(self, domid: int) -> None:
        if domid == 0 or domid >= DOMID_FIRST_RESERVED:
            raise XenstoreError("EINVAL", f"cannot release domain {domid}")
        if domid not in self.domains:
            raise XenstoreError("ENOENT", f"domain {domid} not introduced")
        del self.domains[domid]
        self.pending_features.pop(domid, None)
        for hook in self.on_release:
            hook(domid)
