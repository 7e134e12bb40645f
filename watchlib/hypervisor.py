"""Where the domain list comes from: the hypervisor, or a mock of it.

``watchlib.domains`` asks a ``Hypervisor`` for ``list_domains()`` each time
xenstore says domains came or went.  Two sources are meant to exist:

- libxenctrl (``xc_domain_getinfolist``) on a Xen host: ``XenHypervisor``,
  a thin adapter over xsd's cffi binding (``xsd.hypervisor.xen``), imported
  only when used, so watchlib still runs where xsd is not installed.
- ``MockHypervisor``: a domain table in a JSON file, for machines without
  Xen and for tests.  xsd's own mock hypervisor reads the same file (format
  and lock in ``watchlib.mock_table``, written once for both), so a test can
  drive both the daemon and the library from one table.
"""
import os
import uuid as uuidlib
from typing import NamedTuple, Optional

from . import mock_table
from .mock_table import DOM0_UUID, DYING, RUNNING, SHUTDOWN, SHUTDOWN_REASONS, STATES  # noqa: F401

MOCK_ENV = "XSD_MOCK_HYPERVISOR"      # path of the mock's JSON file


class NoHypervisor(RuntimeError):
    """Neither a Xen host nor ``$XSD_MOCK_HYPERVISOR``: nothing to list domains from."""


class DomainInfo(NamedTuple):
    domid: int
    uuid: str
    state: str = RUNNING
    shutdown_reason: Optional[str] = None


class Hypervisor:
    """What watchlib.domains needs from a hypervisor."""

    def list_domains(self) -> list:
        """Every domain that exists now, as DomainInfo, in any order."""
        raise NotImplementedError


class MockHypervisor(Hypervisor):
    """A domain table in a JSON file (``watchlib.mock_table``).

    ``MockHypervisor(path)`` creates the file with dom0 alone if it does not
    exist.  ``create``, ``shutdown``, ``destroy`` edit it under the table's
    flock, so several processes may share one table.
    """

    def __init__(self, path):
        self.path = str(path)
        mock_table.ensure(self.path)

    # -- reading ------------------------------------------------------------

    def list_domains(self) -> list:
        return [DomainInfo(int(d["domid"]), d.get("uuid") or "", d.get("state", RUNNING),
                           d.get("shutdown_reason")) for d in mock_table.load(self.path)]

    def get(self, domid: int) -> Optional[DomainInfo]:
        for info in self.list_domains():
            if info.domid == domid:
                return info
        return None

    # -- editing --------------------------------------------------------------

    def _edit(self, domid: int, fn) -> DomainInfo:
        return mock_table.update(self.path,
                                 lambda rows: fn(rows, mock_table.find(rows, domid)))

    def create(self, domid: int, uuid: Optional[str] = None) -> DomainInfo:
        """A new running domain; ValueError if the domid exists."""
        uuid = uuid or str(uuidlib.uuid4())

        def add(rows):
            if any(int(d["domid"]) == domid for d in rows):
                raise ValueError(f"domain {domid} already exists")
            rows.append({"domid": domid, "uuid": uuid, "state": RUNNING,
                         "shutdown_reason": None})
            rows.sort(key=lambda d: int(d["domid"]))
        mock_table.update(self.path, add)
        return DomainInfo(domid, uuid, RUNNING, None)

    def shutdown(self, domid: int, reason: str = "poweroff") -> DomainInfo:
        if reason not in SHUTDOWN_REASONS:
            raise ValueError(f"shutdown reason must be one of {SHUTDOWN_REASONS}")
        return self.set_state(domid, SHUTDOWN, reason)

    def set_state(self, domid: int, state: str, reason: Optional[str] = None) -> DomainInfo:
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}")

        def fn(rows, i):
            rows[i]["state"], rows[i]["shutdown_reason"] = state, reason
            return DomainInfo(domid, rows[i].get("uuid", ""), state, reason)
        return self._edit(domid, fn)

    def destroy(self, domid: int) -> DomainInfo:
        def fn(rows, i):
            d = rows.pop(i)
            return DomainInfo(domid, d.get("uuid", ""), d.get("state", RUNNING),
                              d.get("shutdown_reason"))
        return self._edit(domid, fn)


class XenHypervisor(Hypervisor):
    """The domain list from libxenctrl, through xsd's binding (ABI mode, loaded at run time).

    On a machine without Xen the constructor raises with a message naming what
    is missing; it is never replaced by the mock behind the caller's back.
    """

    def __init__(self):
        from xsd.hypervisor.xen import XenHypervisor as Binding   # needs xsd and libxenctrl
        self._xen = Binding()

    def list_domains(self) -> list:
        return [DomainInfo(d.domid, d.uuid, d.state, d.shutdown_reason)
                for d in self._xen.list_domains().values()]


def on_xen() -> bool:
    return os.path.exists("/dev/xen/privcmd") or os.path.exists("/proc/xen/privcmd")


def default_hypervisor() -> Hypervisor:
    """The mock when ``$XSD_MOCK_HYPERVISOR`` names its file; libxenctrl on a Xen host."""
    path = os.environ.get(MOCK_ENV)
    if path:
        return MockHypervisor(path)
    if on_xen():
        return XenHypervisor()
    raise NoHypervisor(
        "no hypervisor here: not a Xen host (no /dev/xen/privcmd or /proc/xen/privcmd); "
        f"pass hypervisor=MockHypervisor(path) or set ${MOCK_ENV}")
