"""A simulated hypervisor, for machines without Xen: domains, ring pages, event channels.

Everything lives under the daemon's run directory, so the daemon, ``xsd-hv``,
tests, guests and watchlib all see one hypervisor:

``mock-hypervisor.json``
    The domain table, shared with ``watchlib.hypervisor.MockHypervisor``:
    format, lock and atomic rewrite are ``watchlib.mock_table``'s, written
    once for both.  Unknown keys are kept; this module adds per domain ``name``,
    ``store_mfn`` and ``store_port`` (what a toolstack passes to INTRODUCE),
    ``ring`` and ``evtchn`` (paths relative to the run directory).  A
    domain without ``ring`` (created through watchlib) exists but has no
    xenstore ring.
``mock-hv/dom<domid>-<uuid8>.ring``
    The guest's ring page, one 4096-byte file per domain incarnation,
    mapped with mmap by the daemon and by the guest.
``mock-hv/dom<domid>-<uuid8>.evtchn``
    The guest's end of its event channel: a Unix datagram socket the guest
    binds; the daemon's notify sends one datagram to it.
``mock-hv/xenstored.evtchn``
    The daemon's end: a guest notifies by sending ``b"evtchn <domid> <port>"``.

VIRQ_DOM_EXC: the daemon watches the run directory with inotify and raises
the VIRQ whenever the table file is replaced or rewritten, so every state
change made by anyone (``xsd-hv``, ``MockControl``, watchlib) reaches it.

``MockControl`` is the control side (create, shutdown, crash, resume,
destroy); ``MockHypervisor`` is the daemon's side.  Nothing here checks who
the caller is: on the mock every process of the user is the hypervisor.
"""
import errno
import logging
import mmap
import os
import secrets
import select
import socket
import struct
import uuid as uuidlib
from typing import Optional

from watchlib import mock_table

from .base import (
    DOMID_FIRST_RESERVED, DYING, DomainInfo, EventChannels, Hypervisor,
    HypervisorError, NoRing, RingMapping, RUNNING, SHUTDOWN, SHUTDOWN_REASONS, STATES, VIRQ_DOM_EXC,
)

log = logging.getLogger("xsd.hypervisor")

TABLE = mock_table.FILE_NAME
STATE_DIR = "mock-hv"
XENSTORED_EVTCHN = os.path.join(STATE_DIR, "xenstored.evtchn")
PAGE_SIZE = 4096
STORE_PORT = 1          # the guest's xenstore port; ports are per domain in Xen


class MockDomain(dict):
    """One row of the table (a dict, so unknown keys survive), with typed accessors."""

    @property
    def domid(self) -> int:
        return int(self["domid"])

    def info(self) -> DomainInfo:
        return DomainInfo(self.domid, self.get("uuid") or "", self.get("state", RUNNING),
                          self.get("shutdown_reason"), self.get("name") or "")

    def path(self, key: str, rundir: str) -> Optional[str]:
        rel = self.get(key)
        return os.path.join(rundir, rel) if rel else None


def table_path(rundir: str) -> str:
    return os.path.join(str(rundir), TABLE)


def load_table(rundir: str) -> list:
    """The table's rows, or [] when there is no table yet."""
    path = table_path(rundir)
    try:
        rows = mock_table.load(path)
    except OSError as err:
        raise HypervisorError(f"{path}: unreadable mock hypervisor table: {err}") from None
    except mock_table.TableError as err:
        raise HypervisorError(str(err)) from None
    return [MockDomain(d) for d in rows]


class MockControl:
    """The simulated hypervisor's controls, usable from any process.

    Every change takes the table's flock, rewrites the table atomically and so
    raises VIRQ_DOM_EXC in the daemon.  Destroying a domain removes its row
    and its ring page; a domid created again later gets a new uuid, a new
    ring page and a new event channel (XSA-322: it inherits nothing).
    """

    def __init__(self, rundir):
        self.rundir = str(rundir)
        self.path = table_path(self.rundir)

    # -- reading ------------------------------------------------------------
    def domains(self) -> list:
        return load_table(self.rundir)

    def record(self, domid: int) -> MockDomain:
        for row in self.domains():
            if row.domid == domid:
                return row
        raise KeyError(f"no domain {domid} in the mock hypervisor")

    def list(self) -> list:
        return [row.info() for row in self.domains()]

    # -- editing --------------------------------------------------------------
    def ensure(self) -> None:
        """Create the table with dom0 alone if there is none."""
        os.makedirs(os.path.join(self.rundir, STATE_DIR), exist_ok=True)
        mock_table.ensure(self.path, name="Domain-0")

    def create(self, name: str = "", domid: Optional[int] = None,
               uuid: Optional[str] = None) -> MockDomain:
        """A new running domain with a zeroed ring page; ValueError if ``domid`` is taken."""
        self.ensure()
        uuid = uuid or str(uuidlib.uuid4())
        with self._locked():
            rows = self._load()
            taken = {row.domid for row in rows}
            if domid is None:
                domid = _next_domid(taken)
            elif domid in taken:
                raise ValueError(f"domain {domid} already exists")
            elif not 0 < domid < DOMID_FIRST_RESERVED:
                raise ValueError(f"domid {domid} out of range 1..{DOMID_FIRST_RESERVED - 1}")
            stem = os.path.join(STATE_DIR, f"dom{domid}-{uuid[:8]}")
            ring = os.path.join(self.rundir, stem + ".ring")
            with open(ring, "wb") as f:
                f.write(bytes(PAGE_SIZE))
            row = MockDomain(domid=domid, uuid=uuid, state=RUNNING, shutdown_reason=None,
                             name=name or f"guest{domid}",
                             store_mfn=secrets.randbelow(0x7FFF0000) + 0x10000,
                             store_port=STORE_PORT, ring=stem + ".ring", evtchn=stem + ".evtchn")
            rows.append(row)
            rows.sort(key=lambda r: r.domid)
            self._save(rows)
        return row

    def shutdown(self, domid: int, reason: str = "poweroff") -> DomainInfo:
        if reason not in SHUTDOWN_REASONS:
            raise ValueError(f"shutdown reason must be one of {', '.join(SHUTDOWN_REASONS)}")
        return self._set(domid, SHUTDOWN, reason)

    def crash(self, domid: int) -> DomainInfo:
        return self._set(domid, SHUTDOWN, "crash")

    def resume(self, domid: int) -> DomainInfo:
        """Back to running (a suspended domain resumed, or a cancelled shutdown)."""
        return self._set(domid, RUNNING, None)

    def set_dying(self, domid: int) -> DomainInfo:
        """Being destroyed: what Xen reports while a dead domain's pages are still mapped."""
        return self._set(domid, DYING, None)

    def destroy(self, domid: int) -> DomainInfo:
        if domid == 0:
            raise ValueError("domain 0 cannot be destroyed")
        with self._locked():
            rows = self._load()
            for i, row in enumerate(rows):
                if row.domid == domid:
                    del rows[i]
                    self._save(rows)
                    break
            else:
                raise KeyError(f"no domain {domid} in the mock hypervisor")
        for key in ("ring", "evtchn"):
            path = row.path(key, self.rundir)
            if path:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        return row.info()

    def _set(self, domid: int, state: str, reason) -> DomainInfo:
        assert state in STATES
        if domid == 0:
            raise ValueError("domain 0 always runs")
        with self._locked():
            rows = self._load()
            for row in rows:
                if row.domid == domid:
                    row["state"], row["shutdown_reason"] = state, reason
                    self._save(rows)
                    return row.info()
        raise KeyError(f"no domain {domid} in the mock hypervisor")

    # -- file -----------------------------------------------------------------
    def _load(self) -> list:
        return load_table(self.rundir)

    def _save(self, rows: list) -> None:
        mock_table.save(self.path, rows)

    def _locked(self):
        return mock_table.locked(self.path)


def _next_domid(taken: set) -> int:
    """One past the highest domid in use (a destroyed highest one comes back, unlike Xen's rover); wraps to a free one."""
    candidate = max(taken | {0}) + 1
    if candidate < DOMID_FIRST_RESERVED:
        return candidate
    for domid in range(1, DOMID_FIRST_RESERVED):
        if domid not in taken:
            return domid
    raise ValueError("no free domid")


# -- the daemon's side ---------------------------------------------------------

class MockRingMapping(RingMapping):
    def __init__(self, path: str):
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            if os.fstat(fd).st_size < PAGE_SIZE:
                raise HypervisorError(f"{path}: ring page shorter than {PAGE_SIZE} bytes")
            self.buffer = mmap.mmap(fd, PAGE_SIZE)
        finally:
            os.close(fd)

    def close(self) -> None:
        if self.buffer is not None:
            try:
                self.buffer.close()
            except BufferError:
                # A memoryview of the page is still alive somewhere; the mapping goes with it.
                pass
            self.buffer = None


class MockHypervisor(Hypervisor):
    """The daemon's view of the mock: reads the table, maps ring files, owns the event socket."""

    name = "mock"

    def __init__(self, rundir):
        self.rundir = str(rundir)
        self.control = MockControl(self.rundir)
        self.control.ensure()

    def describe(self) -> str:
        return f"mock ({self.control.path})"

    def _rows(self) -> dict:
        # Read afresh each time (a few dozen microseconds): a cache keyed on the file's
        # stat can miss a change, as renames reuse inode numbers within one mtime tick.
        return {row.domid: row for row in load_table(self.rundir)}

    def list_domains(self) -> dict:
        return {domid: row.info() for domid, row in self._rows().items()}

    def domain_info(self, domid: int) -> Optional[DomainInfo]:
        row = self._rows().get(domid)
        return row.info() if row is not None else None

    def record(self, domid: int) -> Optional[MockDomain]:
        return self._rows().get(domid)

    def map_ring(self, domid: int, mfn: int) -> RingMapping:
        row = self.record(domid)
        if row is None:
            raise HypervisorError(f"no domain {domid}")
        path = row.path("ring", self.rundir)
        if path is None:
            raise NoRing(f"domain {domid} has no xenstore ring page")
        if int(row.get("store_mfn", -1)) & 0xFFFFFFFF != mfn:
            raise HypervisorError(f"domain {domid}: mfn {mfn} is not its xenstore page")
        try:
            return MockRingMapping(path)
        except OSError as err:
            raise HypervisorError(f"domain {domid}: cannot map {path}: {err}") from None

    def open_event_channels(self) -> "MockEventChannels":
        return MockEventChannels(self)


class MockEventChannels(EventChannels):
    """Event channels over a Unix datagram socket, and VIRQ_DOM_EXC over inotify.

    One epoll descriptor stands for both, as a xenevtchn handle has one fd.
    """

    def __init__(self, hv: MockHypervisor):
        self.hv = hv
        self.path = os.path.join(hv.rundir, XENSTORED_EVTCHN)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        try:
            os.unlink(self.path)             # a stale socket from a previous run
        except FileNotFoundError:
            pass
        self.sock.bind(self.path)
        self.inotify = _Inotify(hv.rundir)
        self.epoll = select.epoll()
        self.epoll.register(self.sock.fileno(), select.EPOLLIN)
        self.epoll.register(self.inotify.fd, select.EPOLLIN)
        self.next_port = 1
        self.bindings = {}        # local port -> (domid, remote port, guest socket path)
        self.by_remote = {}       # (domid, remote port) -> local port
        self.virq_port = None

    def fileno(self) -> int:
        return self.epoll.fileno()

    def _alloc(self) -> int:
        port = self.next_port
        self.next_port += 1
        return port

    def bind_interdomain(self, domid: int, remote_port: int) -> int:
        row = self.hv.record(domid)
        if row is None:
            raise HypervisorError(f"bind_interdomain: no domain {domid}")
        if row.get("store_port") != remote_port or not row.get("evtchn"):
            raise HypervisorError(f"bind_interdomain: domain {domid} has no unbound port {remote_port}")
        if (domid, remote_port) in self.by_remote:
            raise HypervisorError(f"bind_interdomain: port {remote_port} of domain {domid} already bound")
        port = self._alloc()
        self.bindings[port] = (domid, remote_port, row.path("evtchn", self.hv.rundir))
        self.by_remote[(domid, remote_port)] = port
        return port

    def bind_virq(self, virq: int) -> int:
        if virq != VIRQ_DOM_EXC:
            raise HypervisorError(f"the mock raises VIRQ_DOM_EXC only, not VIRQ {virq}")
        if self.virq_port is None:
            self.virq_port = self._alloc()
        return self.virq_port

    def unbind(self, port: int) -> None:
        binding = self.bindings.pop(port, None)
        if binding is not None:
            self.by_remote.pop(binding[:2], None)
        elif port == self.virq_port:
            self.virq_port = None

    def notify(self, port: int) -> None:
        binding = self.bindings.get(port)
        if binding is None:
            return
        try:
            self.sock.sendto(b"!", binding[2])
        except OSError as err:
            # Guest not listening (ENOENT, ECONNREFUSED) or its queue full (EAGAIN):
            # like a pending bit already set, the guest finds the ring changed when it looks.
            if err.errno not in (errno.ENOENT, errno.ECONNREFUSED, errno.EAGAIN, errno.ENOBUFS):
                raise

    def pending(self) -> list:
        fired = {}
        for fd, _ in self.epoll.poll(0):
            if fd == self.inotify.fd:
                if self.inotify.changed(TABLE) and self.virq_port is not None:
                    fired[self.virq_port] = None
                continue
            while True:
                try:
                    data = self.sock.recv(64)
                except BlockingIOError:
                    break
                port = self._parse(data)
                if port is not None:
                    fired[port] = None
        return list(fired)

    def _parse(self, data: bytes):
        fields = data.split()
        if len(fields) == 3 and fields[0] == b"evtchn" and fields[1].isdigit() and fields[2].isdigit():
            return self.by_remote.get((int(fields[1]), int(fields[2])))
        log.debug("mock event channel: ignoring %r", data[:64])
        return None

    def close(self) -> None:
        self.epoll.close()
        self.inotify.close()
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


# -- inotify, through ctypes (the os module has no binding) --------------------

_IN_CLOSE_WRITE, _IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x8, 0x80, 0x100, 0x200
_EVENT = struct.Struct("iIII")   # struct inotify_event: wd, mask, cookie, len; then name
_libc = None


def _load_libc():
    """libc's inotify calls.  ctypes rather than cffi's ABI mode: every daemon on the mock
    hypervisor opens this at start, and cffi parses its declarations with pycparser there
    (about 50 ms a start, most of a test's daemon start-up besides the imports)."""
    global _libc
    if _libc is None:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_init1.restype = ctypes.c_int
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        libc.inotify_add_watch.restype = ctypes.c_int
        _libc = (ctypes.get_errno, libc)
    return _libc


class _Inotify:
    def __init__(self, directory: str):
        errno, lib = _load_libc()
        self.fd = lib.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise HypervisorError(f"inotify_init1: {os.strerror(errno())}")
        mask = _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE
        if lib.inotify_add_watch(self.fd, os.fsencode(directory), mask) < 0:
            err = errno()
            os.close(self.fd)
            raise HypervisorError(f"inotify_add_watch {directory}: {os.strerror(err)}")

    def changed(self, name: str) -> bool:
        """Drain the queue; True if any event concerned ``name``."""
        wanted = os.fsencode(name)
        hit = False
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return hit
            pos = 0
            while pos + _EVENT.size <= len(data):
                _, _, _, length = _EVENT.unpack_from(data, pos)
                raw = data[pos + _EVENT.size:pos + _EVENT.size + length]
                if raw.rstrip(b"\0") == wanted:
                    hit = True
                pos += _EVENT.size + length

    def close(self) -> None:
        os.close(self.fd)
