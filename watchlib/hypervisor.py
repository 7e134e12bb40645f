"""Where the domain list comes from: the hypervisor, or a mock of it.

``watchlib.domains`` asks a ``Hypervisor`` for ``list_domains()`` each time
xenstore says domains came or went.  Two sources are meant to exist:

- libxenctrl (``xc_domain_getinfolist``) on a Xen host: ``XenHypervisor``,
  a thin adapter over xsd's cffi binding (``xsd.hypervisor.xen``), imported
  only when used, so watchlib still runs where xsd is not installed.
- ``MockHypervisor``: a domain table in a JSON file, for machines without
  Xen and for tests.  xsd's own mock hypervisor is to read the same file, so
  a test can drive both the daemon and the library from one table.

The file format (version 1), written atomically (temporary file + rename):

    {"version": 1,
     "domains": [
        {"domid": 0, "uuid": "00000000-0000-0000-0000-000000000000",
         "state": "running", "shutdown_reason": null},
        {"domid": 5, "uuid": "...", "state": "shutdown", "shutdown_reason": "reboot"}
     ]}

``state`` is "running", "shutdown" (the domain stopped and says why in
``shutdown_reason``: "poweroff", "reboot", "suspend", "crash", "watchdog",
"soft_reset", as in xen/include/public/sched.h) or "dying" (being destroyed).
A destroyed domain is simply absent.  Unknown keys are kept as they are, so the
daemon can add its own.
"""
import fcntl
import json
import os
import uuid as uuidlib
from typing import NamedTuple, Optional

RUNNING, SHUTDOWN, DYING = "running", "shutdown", "dying"
STATES = (RUNNING, SHUTDOWN, DYING)
SHUTDOWN_REASONS = ("poweroff", "reboot", "suspend", "crash", "watchdog", "soft_reset")
DOM0_UUID = "00000000-0000-0000-0000-000000000000"

MOCK_ENV = "XSD_MOCK_HYPERVISOR"      # path of the mock's JSON file


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
    """A domain table in a JSON file (see the module docstring).

    ``MockHypervisor(path)`` creates the file with dom0 alone if it does not
    exist.  ``create``, ``shutdown``, ``destroy`` edit it under an flock on
    ``path + ".lock"``, so several processes may share one table.
    """

    def __init__(self, path):
        self.path = str(path)
        if not os.path.exists(self.path):
            with self._locked():
                if not os.path.exists(self.path):
                    self._save([{"domid": 0, "uuid": DOM0_UUID, "state": RUNNING,
                                 "shutdown_reason": None}])

    # -- reading ------------------------------------------------------------

    def _load(self) -> list:
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return []
        if data.get("version") != 1:
            raise ValueError(f"{self.path}: unknown mock hypervisor version {data.get('version')!r}")
        return data["domains"]

    def list_domains(self) -> list:
        return [DomainInfo(int(d["domid"]), d.get("uuid") or "", d.get("state", RUNNING),
                           d.get("shutdown_reason")) for d in self._load()]

    def get(self, domid: int) -> Optional[DomainInfo]:
        for info in self.list_domains():
            if info.domid == domid:
                return info
        return None

    # -- editing --------------------------------------------------------------

    def _locked(self):
        return _FileLock(self.path + ".lock")

    def _save(self, domains: list) -> None:
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"version": 1, "domains": domains}, f, indent=1)
            f.write("\n")
        os.replace(tmp, self.path)

    def _edit(self, domid: int, fn) -> DomainInfo:
        with self._locked():
            domains = self._load()
            for i, d in enumerate(domains):
                if int(d["domid"]) == domid:
                    result = fn(domains, i, d)
                    self._save(domains)
                    return result
            raise KeyError(f"no domain {domid} in the mock hypervisor")

    def create(self, domid: int, uuid: Optional[str] = None) -> DomainInfo:
        """A new running domain; ValueError if the domid exists."""
        uuid = uuid or str(uuidlib.uuid4())
        with self._locked():
            domains = self._load()
            if any(int(d["domid"]) == domid for d in domains):
                raise ValueError(f"domain {domid} already exists")
            domains.append({"domid": domid, "uuid": uuid, "state": RUNNING,
                            "shutdown_reason": None})
            domains.sort(key=lambda d: int(d["domid"]))
            self._save(domains)
        return DomainInfo(domid, uuid, RUNNING, None)

    def shutdown(self, domid: int, reason: str = "poweroff") -> DomainInfo:
        if reason not in SHUTDOWN_REASONS:
            raise ValueError(f"shutdown reason must be one of {SHUTDOWN_REASONS}")

        def fn(domains, i, d):
            d["state"], d["shutdown_reason"] = SHUTDOWN, reason
            return DomainInfo(domid, d.get("uuid", ""), SHUTDOWN, reason)
        return self._edit(domid, fn)

    def set_state(self, domid: int, state: str, reason: Optional[str] = None) -> DomainInfo:
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}")

        def fn(domains, i, d):
            d["state"], d["shutdown_reason"] = state, reason
            return DomainInfo(domid, d.get("uuid", ""), state, reason)
        return self._edit(domid, fn)

    def destroy(self, domid: int) -> DomainInfo:
        def fn(domains, i, d):
            del domains[i]
            return DomainInfo(domid, d.get("uuid", ""), d.get("state", RUNNING),
                              d.get("shutdown_reason"))
        return self._edit(domid, fn)


class _FileLock:
    def __init__(self, path):
        self.path = path
        self.fd = None

    def __enter__(self):
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


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
    raise RuntimeError(
        "no hypervisor here: not a Xen host (no /dev/xen/privcmd or /proc/xen/privcmd); "
        f"pass hypervisor=MockHypervisor(path) or set ${MOCK_ENV}")
