"""Hypervisor backends: Xen (its libraries, loaded at run time) or a simulated one.

``open_hypervisor(kind, rundir)``: ``kind`` is "xen", "mock" or "auto".
"auto" picks Xen when this machine has Xen's privileged interface
(/dev/xen/privcmd or /proc/xen/privcmd) and the mock otherwise; the choice
is logged.  An explicit "xen" that cannot run raises HypervisorUnavailable
saying what is missing; it never falls back to the mock.
"""
import os

from .base import (
    DomainInfo, EventChannels, Hypervisor, HypervisorError, HypervisorUnavailable, RingMapping,
    VIRQ_DOM_EXC,
)

KINDS = ("auto", "mock", "xen")

__all__ = [
    "DomainInfo", "EventChannels", "Hypervisor", "HypervisorError", "HypervisorUnavailable",
    "KINDS", "RingMapping", "VIRQ_DOM_EXC", "open_hypervisor", "resolve_kind",
]


def resolve_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"hypervisor must be one of {', '.join(KINDS)}, not {kind!r}")
    if kind == "auto":
        from .xen import PRIVCMD
        return "xen" if any(os.path.exists(p) for p in PRIVCMD) else "mock"
    return kind


def open_hypervisor(kind: str, rundir: str) -> Hypervisor:
    kind = resolve_kind(kind)
    if kind == "mock":
        from .mock import MockHypervisor
        return MockHypervisor(rundir)
    from .xen import XenHypervisor
    return XenHypervisor()
