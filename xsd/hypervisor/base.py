"""What xenstored needs from a hypervisor, whatever provides it (Xen, or the mock).

Three services, as C xenstored uses libxenctrl, libxenevtchn and
libxengnttab / libxenforeignmemory:

- the domain list: ``list_domains()`` -> ``{domid: DomainInfo}``, and
  ``domain_info(domid)`` for one;
- a domain's xenstore ring page: ``map_ring(domid, mfn)`` -> ``RingMapping``
  (a writable buffer of one page, ``close()`` unmaps it);
- event channels: ``open_event_channels()`` -> ``EventChannels``, one handle
  with one file descriptor for every bound port, like a xenevtchn handle:
  bind to a guest's port or to VIRQ_DOM_EXC, notify, and ``pending()`` to
  learn which ports fired once the descriptor is readable.

VIRQ_DOM_EXC ("exceptional event for some domain", xen.h) fires whenever a
domain changes state; it carries no domid, so xenstored then re-reads the
domain list.
"""
from typing import NamedTuple, Optional

# Domain states and shutdown reasons (sched.h) as the daemon, watchlib and the
# mock's table name them: defined once, in the table's module.
from watchlib.mock_table import (  # noqa: F401
    DOM0_UUID, DYING, RUNNING, SHUTDOWN, SHUTDOWN_REASONS, STATES,
)

VIRQ_DOM_EXC = 3                 # xen/include/public/xen.h
DOMID_FIRST_RESERVED = 0x7FF0    # xen.h: ids from here on are never ordinary domains


class HypervisorError(Exception):
    """A hypervisor operation failed (mapping, binding, listing)."""


class HypervisorUnavailable(HypervisorError):
    """The backend cannot run here; the message names what is missing."""


class NoRing(HypervisorError):
    """The domain exists but has no xenstore ring page (a mock domain made by watchlib)."""


class DomainInfo(NamedTuple):
    """One domain as the hypervisor reports it (xc_domain_getinfolist)."""
    domid: int
    uuid: str
    state: str = RUNNING                 # RUNNING, SHUTDOWN or DYING
    shutdown_reason: Optional[str] = None  # one of SHUTDOWN_REASONS when SHUTDOWN
    name: str = ""                       # the mock's label; Xen has no names (the toolstack keeps them)


class RingMapping:
    """A mapped ring page: ``buffer`` is writable memory of at least one page."""

    buffer = None

    def close(self) -> None:
        raise NotImplementedError


class EventChannels:
    """One event-channel handle (xenevtchn_handle): many ports, one descriptor.

    When ``fileno()`` is readable, ``pending()`` returns the local ports that
    fired since the last call (each port once) and re-arms them.
    """

    def fileno(self) -> int:
        raise NotImplementedError

    def bind_interdomain(self, domid: int, remote_port: int) -> int:
        """Connect to ``remote_port`` of ``domid``; return our local port."""
        raise NotImplementedError

    def bind_virq(self, virq: int) -> int:
        raise NotImplementedError

    def unbind(self, port: int) -> None:
        raise NotImplementedError

    def notify(self, port: int) -> None:
        raise NotImplementedError

    def pending(self) -> list:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class Hypervisor:
    """A hypervisor backend.  ``name`` is "xen" or "mock"."""

    name = "?"

    def list_domains(self) -> dict:
        """``{domid: DomainInfo}`` of every domain that exists now."""
        raise NotImplementedError

    def domain_info(self, domid: int) -> Optional[DomainInfo]:
        return self.list_domains().get(domid)

    def map_ring(self, domid: int, mfn: int) -> RingMapping:
        """Map ``domid``'s xenstore ring page (raise HypervisorError if impossible)."""
        raise NotImplementedError

    def open_event_channels(self) -> EventChannels:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name

    def close(self) -> None:
        pass
