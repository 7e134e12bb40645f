"""The Xen backend: Xen's own libraries, loaded at run time through cffi's ABI mode.

libxenctrl lists domains (xc_domain_getinfolist), libxenevtchn carries event
channels and VIRQ_DOM_EXC, libxengnttab maps a guest's ring through its
reserved xenstore grant (GNTTAB_RESERVED_XENSTORE), with libxenforeignmemory
and the ring's mfn as the fallback: the same order as C xenstored's
map_interface.  Nothing is compiled; the declarations are in ``xen.cdef``.

On a machine without Xen this backend refuses to start and says what is
missing (a library, with the Debian package that ships it, or the Xen device
nodes).  It is never replaced by the mock behind the user's back.

Not done: dom0's own ring (/dev/xen/xsd_kva, /proc/xen/xsd_port), which the
dom0 kernel uses when xenstored runs in dom0; dom0 tools use the sockets.
"""
import ctypes.util
import logging
import mmap
import os
import select
import uuid as uuidlib

from .base import (
    DOMID_FIRST_RESERVED, DYING, DomainInfo, EventChannels, Hypervisor, HypervisorError,
    HypervisorUnavailable, RingMapping, RUNNING, SHUTDOWN, SHUTDOWN_REASONS,
)

log = logging.getLogger("xsd.hypervisor")

CDEF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "xen.cdef")

# name -> (sonames to try after ctypes.util.find_library, Debian package that ships it)
LIBRARIES = {
    "xenctrl": (("libxenctrl.so", "libxenctrl.so.4.17"), "libxenmisc4.17"),
    "xenevtchn": (("libxenevtchn.so.1", "libxenevtchn.so"), "libxenevtchn1"),
    "xengnttab": (("libxengnttab.so.1", "libxengnttab.so"), "libxengnttab1"),
    "xenforeignmemory": (("libxenforeignmemory.so.1", "libxenforeignmemory.so"), "libxenforeignmemory1"),
}
PRIVCMD = ("/dev/xen/privcmd", "/proc/xen/privcmd")
EVTCHN_DEVICE = "/dev/xen/evtchn"

# xen/include/public/domctl.h
XEN_DOMINF_dying = 1 << 0
XEN_DOMINF_shutdown = 1 << 2
XEN_DOMINF_shutdownshift = 16
XEN_DOMINF_shutdownmask = 255
GNTTAB_RESERVED_XENSTORE = 1      # xen/include/public/grant_table.h
PAGE_SIZE = 4096
_INFO_BUFFER = 4096               # more than any release's xen_domctl_getdomaininfo

_loaded = None


def load(find=ctypes.util.find_library):
    """``(ffi, {name: lib})`` for the four libraries; HypervisorUnavailable names the missing ones."""
    global _loaded
    if _loaded is not None and find is ctypes.util.find_library:
        return _loaded
    import cffi
    ffi = cffi.FFI()
    with open(CDEF, encoding="ascii") as f:
        ffi.cdef(f.read())
    libs, missing = {}, []
    for name, (sonames, package) in LIBRARIES.items():
        candidates = [c for c in (find(name),) if c] + list(sonames)
        for candidate in candidates:
            try:
                libs[name] = ffi.dlopen(candidate)
                break
            except OSError:
                continue
        else:
            missing.append(f"lib{name} ({', '.join(candidates)}; Debian package {package})")
    if missing:
        raise HypervisorUnavailable(
            "the Xen backend needs Xen's libraries; not found: " + "; ".join(missing)
            + ". Install them, or run with --hypervisor mock")
    result = (ffi, libs)
    if find is ctypes.util.find_library:
        _loaded = result
    return result


def _oserror(ffi, what: str) -> str:
    err = ffi.errno
    return f"{what}: {os.strerror(err) if err else 'failed'}"


class XenRingMapping(RingMapping):
    def __init__(self, ffi, addr, unmap):
        self.buffer = ffi.buffer(addr, PAGE_SIZE)
        self._addr = addr
        self._unmap = unmap

    def close(self) -> None:
        if self._addr is not None:
            self._unmap(self._addr)
            self._addr = None
            self.buffer = None


class XenHypervisor(Hypervisor):
    name = "xen"

    def __init__(self, find=ctypes.util.find_library):
        self.ffi, self.libs = load(find)
        absent = [p for p in PRIVCMD if not os.path.exists(p)]
        if len(absent) == len(PRIVCMD):
            raise HypervisorUnavailable(
                f"no Xen hypervisor interface here: neither {' nor '.join(PRIVCMD)} exists. "
                "xsd --hypervisor xen must run in dom0 of a Xen host; elsewhere use --hypervisor mock")
        if not os.path.exists(EVTCHN_DEVICE):
            raise HypervisorUnavailable(
                f"{EVTCHN_DEVICE} is missing: load the xen-evtchn kernel module (dom0 of a Xen host)")
        ffi, ctrl = self.ffi, self.libs["xenctrl"]
        xch = ctrl.xc_interface_open(ffi.NULL, ffi.NULL, 0)
        if xch == ffi.NULL:
            raise HypervisorUnavailable(_oserror(ffi, "xc_interface_open (are we dom0?)"))
        self.xch = ffi.gc(xch, ctrl.xc_interface_close)
        gnttab = self.libs["xengnttab"]
        handle = gnttab.xengnttab_open(ffi.NULL, 0)
        if handle == ffi.NULL:
            log.warning("%s; rings will be mapped by mfn only", _oserror(ffi, "xengnttab_open"))
            self.gnttab = None
        else:
            self.gnttab = ffi.gc(handle, gnttab.xengnttab_close)
        fmem_lib = self.libs["xenforeignmemory"]
        handle = fmem_lib.xenforeignmemory_open(ffi.NULL, 0)
        if handle == ffi.NULL:
            raise HypervisorUnavailable(_oserror(ffi, "xenforeignmemory_open"))
        self.fmem = ffi.gc(handle, fmem_lib.xenforeignmemory_close)
        self._info = ffi.cast("xc_domaininfo_t *", ffi.new("char[]", _INFO_BUFFER))
        self._info_owner = self._info   # keeps the buffer alive with the cast pointer

    def describe(self) -> str:
        return "xen (libxenctrl, libxenevtchn, libxengnttab, libxenforeignmemory)"

    def _info_at(self, first: int):
        """The domain with the lowest domid >= ``first``, or None."""
        ffi = self.ffi
        info = self._info
        n = self.libs["xenctrl"].xc_domain_getinfolist(self.xch, first, 1, info)
        if n < 0:
            raise HypervisorError(_oserror(ffi, "xc_domain_getinfolist"))
        if n == 0:
            return None
        flags = info.flags
        if flags & XEN_DOMINF_dying:
            state, reason = DYING, None
        elif flags & XEN_DOMINF_shutdown:
            code = (flags >> XEN_DOMINF_shutdownshift) & XEN_DOMINF_shutdownmask
            state = SHUTDOWN
            reason = SHUTDOWN_REASONS[code] if code < len(SHUTDOWN_REASONS) else str(code)
        else:
            state, reason = RUNNING, None
        handle = bytes(ffi.buffer(info.handle, 16))
        return DomainInfo(int(info.domain), str(uuidlib.UUID(bytes=handle)), state, reason)

    def list_domains(self) -> dict:
        domains = {}
        first = 0
        while first < DOMID_FIRST_RESERVED:
            info = self._info_at(first)
            if info is None:
                break
            domains[info.domid] = info
            first = info.domid + 1
        return domains

    def domain_info(self, domid: int):
        info = self._info_at(domid)
        return info if info is not None and info.domid == domid else None

    def map_ring(self, domid: int, mfn: int) -> RingMapping:
        ffi = self.ffi
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        if self.gnttab is not None:
            gnttab = self.libs["xengnttab"]
            addr = gnttab.xengnttab_map_grant_ref(self.gnttab, domid, GNTTAB_RESERVED_XENSTORE, prot)
            if addr != ffi.NULL:
                return XenRingMapping(ffi, addr, lambda a: gnttab.xengnttab_unmap(self.gnttab, a, 1))
        fmem_lib = self.libs["xenforeignmemory"]
        pfns = ffi.new("xen_pfn_t[1]", [mfn])
        errs = ffi.new("int[1]")
        addr = fmem_lib.xenforeignmemory_map(self.fmem, domid, prot, 1, pfns, errs)
        if addr == ffi.NULL:
            raise HypervisorError(_oserror(ffi, f"mapping the ring of domain {domid}"))
        if errs[0]:
            fmem_lib.xenforeignmemory_unmap(self.fmem, addr, 1)
            raise HypervisorError(f"mapping the ring of domain {domid}: {os.strerror(-errs[0])}")
        return XenRingMapping(ffi, addr, lambda a: fmem_lib.xenforeignmemory_unmap(self.fmem, a, 1))

    def open_event_channels(self) -> "XenEventChannels":
        return XenEventChannels(self.ffi, self.libs["xenevtchn"])


class XenEventChannels(EventChannels):
    def __init__(self, ffi, lib):
        self.ffi, self.lib = ffi, lib
        handle = lib.xenevtchn_open(ffi.NULL, 0)
        if handle == ffi.NULL:
            raise HypervisorUnavailable(_oserror(ffi, "xenevtchn_open"))
        self.handle = ffi.gc(handle, lib.xenevtchn_close)
        self.fd = lib.xenevtchn_fd(self.handle)

    def _port(self, result: int, what: str) -> int:
        if result < 0:
            raise HypervisorError(_oserror(self.ffi, what))
        return result

    def fileno(self) -> int:
        return self.fd

    def bind_interdomain(self, domid: int, remote_port: int) -> int:
        return self._port(self.lib.xenevtchn_bind_interdomain(self.handle, domid, remote_port),
                          f"binding port {remote_port} of domain {domid}")

    def bind_virq(self, virq: int) -> int:
        return self._port(self.lib.xenevtchn_bind_virq(self.handle, virq), f"binding VIRQ {virq}")

    def unbind(self, port: int) -> None:
        if self.lib.xenevtchn_unbind(self.handle, port) < 0:
            raise HypervisorError(_oserror(self.ffi, f"unbinding port {port}"))

    def notify(self, port: int) -> None:
        if self.lib.xenevtchn_notify(self.handle, port) < 0:
            log.warning("%s", _oserror(self.ffi, f"notifying port {port}"))

    def pending(self) -> list:
        """Every port that fired, each unmasked again (xenevtchn_pending reads one at a time)."""
        lib, handle, fd = self.lib, self.handle, self.fd
        ports = {}
        while select.select([fd], [], [], 0)[0]:
            port = lib.xenevtchn_pending(handle)
            if port < 0:
                break
            lib.xenevtchn_unmask(handle, port)
            ports[port] = None
        return list(ports)

    def close(self) -> None:
        self.ffi.release(self.handle)
