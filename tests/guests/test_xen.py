"""The Xen backend on a machine without Xen: what can be checked here is checked.

The libraries load; every prototype in xen.cdef is the one the installed
headers declare (a C compiler refuses a conflicting redeclaration); the
struct offsets xsd reads are the headers'; and without Xen the backend fails
with a message naming what is missing, never quietly using the mock.
"""
import os
import re
import shutil
import subprocess
import sys

import pytest

from xsd.hypervisor import HypervisorUnavailable, resolve_kind
from xsd.hypervisor import xen

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEADERS = ("xenctrl.h", "xenevtchn.h", "xengnttab.h", "xenforeignmemory.h")
no_xen = pytest.mark.skipif(any(os.path.exists(p) for p in xen.PRIVCMD),
                            reason="this machine runs Xen")


def _libs_or_skip():
    try:
        return xen.load()
    except HypervisorUnavailable as err:
        pytest.skip(f"Xen libraries not installed: {err}")


def test_the_libraries_load_and_export_every_declared_function():
    ffi, libs = _libs_or_skip()
    assert set(libs) == {"xenctrl", "xenevtchn", "xengnttab", "xenforeignmemory"}
    prefix = {"xenctrl": "xc_", "xenevtchn": "xenevtchn_", "xengnttab": "xengnttab_",
              "xenforeignmemory": "xenforeignmemory_"}
    for name, lib in libs.items():
        functions = [f for f in _prototypes() if f[0].startswith(prefix[name])]
        assert functions, name
        for fn, _ in functions:
            assert getattr(lib, fn) is not None       # resolves the symbol, or raises


def _prototypes() -> list:
    """``(name, declaration)`` of every function in xen.cdef, as written there."""
    with open(xen.CDEF, encoding="ascii") as f:
        text = re.sub(r"/\*.*?\*/", "", f.read(), flags=re.S)
    out = []
    for statement in text.split(";"):
        statement = " ".join(statement.split())
        if "(" in statement and not statement.startswith(("typedef", "struct")):
            name = re.search(r"(\w+)\s*\(", statement).group(1)
            out.append((name, statement + ";"))
    return out


def test_declarations_match_the_installed_headers(tmp_path):
    if not all(os.path.exists(os.path.join("/usr/include", h)) for h in HEADERS):
        pytest.skip("libxen-dev headers not installed")
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        pytest.skip("no C compiler")
    ffi, _ = _libs_or_skip()
    fields = [f for f, _ in ffi.typeof("xc_domaininfo_t").fields]
    lines = [f"#include <{h}>" for h in HEADERS] + ["#include <stddef.h>"]
    # A redeclaration with another type is an error ("conflicting types").
    lines += [decl for _, decl in _prototypes()]
    for field in fields:
        lines.append(f"_Static_assert(offsetof(xc_domaininfo_t, {field}) == "
                     f"{ffi.offsetof('xc_domaininfo_t', field)}, \"offset of {field}\");")
        size = ffi.sizeof(ffi.typeof("xc_domaininfo_t").fields[fields.index(field)][1].type)
        lines.append(f"_Static_assert(sizeof(((xc_domaininfo_t *)0)->{field}) == {size}, "
                     f"\"size of {field}\");")
    lines.append(f"_Static_assert(sizeof(xc_domaininfo_t) >= {ffi.sizeof('xc_domaininfo_t')}, \"\");")
    lines.append(f"_Static_assert(sizeof(xc_domaininfo_t) <= {xen._INFO_BUFFER}, \"buffer\");")
    lines.append(f"_Static_assert(VIRQ_DOM_EXC == 3 && GNTTAB_RESERVED_XENSTORE == "
                 f"{xen.GNTTAB_RESERVED_XENSTORE}, \"\");")
    lines.append(f"_Static_assert(XEN_DOMINF_dying == {xen.XEN_DOMINF_dying} && XEN_DOMINF_shutdown == "
                 f"{xen.XEN_DOMINF_shutdown} && XEN_DOMINF_shutdownshift == "
                 f"{xen.XEN_DOMINF_shutdownshift}, \"\");")
    source = tmp_path / "check.c"
    source.write_text("\n".join(lines) + "\n")
    result = subprocess.run([compiler, "-std=gnu11", "-fsyntax-only", "-Werror", str(source)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # And a wrong one is caught: the check can fail.
    source.write_text("\n".join(lines[:5] + ["int xenevtchn_fd(xenevtchn_handle *xce, int extra);"]))
    assert subprocess.run([compiler, "-fsyntax-only", str(source)], capture_output=True).returncode


@no_xen
def test_without_xen_the_backend_names_what_is_missing():
    _libs_or_skip()
    with pytest.raises(HypervisorUnavailable) as info:
        xen.XenHypervisor()
    message = str(info.value)
    assert "/dev/xen/privcmd" in message and "/proc/xen/privcmd" in message
    assert "--hypervisor mock" in message


def test_a_missing_library_is_named_with_its_debian_package(monkeypatch):
    monkeypatch.setattr(xen, "LIBRARIES", dict(xen.LIBRARIES, xenctrl=(("libxenctrl-nonexistent.so",),
                                                                      "libxenmisc4.17")))
    with pytest.raises(HypervisorUnavailable) as info:
        xen.XenHypervisor(find=lambda name: None)
    assert "libxenctrl" in str(info.value) and "libxenmisc4.17" in str(info.value)


@no_xen
def test_auto_picks_the_mock_here_and_xen_is_never_replaced_by_it(tmp_path):
    assert resolve_kind("auto") == "mock"
    result = subprocess.run([sys.executable, "-m", "xsd", "--rundir", str(tmp_path / "run"),
                             "--hypervisor", "xen"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 1
    assert "xsd: " in result.stderr and "privcmd" in result.stderr
    assert not os.path.exists(tmp_path / "run" / "socket")


class FakeXenctrl:
    """xc_domain_getinfolist over a list of (domid, flags, uuid bytes), filling the real struct."""

    def __init__(self, ffi, domains):
        self.ffi, self.domains = ffi, sorted(domains)

    def xc_domain_getinfolist(self, xch, first, count, info):
        assert count == 1
        for domid, flags, handle in self.domains:
            if domid >= first:
                info.domain, info.flags = domid, flags
                self.ffi.memmove(info.handle, handle, 16)
                return 1
        return 0


def test_domain_list_decoding_states_reasons_and_uuids():
    ffi, _ = _libs_or_skip()
    hv = object.__new__(xen.XenHypervisor)          # no hypervisor here: only the decoding
    hv.ffi, hv.xch = ffi, None
    hv._info = hv._info_owner = ffi.cast("xc_domaininfo_t *", ffi.new("char[]", xen._INFO_BUFFER))
    shutdown = xen.XEN_DOMINF_shutdown
    hv.libs = {"xenctrl": FakeXenctrl(ffi, [
        (0, 1 << 5, bytes(16)),
        (3, shutdown | (1 << xen.XEN_DOMINF_shutdownshift), bytes(range(16))),   # reboot
        (7, shutdown | (3 << xen.XEN_DOMINF_shutdownshift), b"\xff" * 16),       # crash
        (9, xen.XEN_DOMINF_dying | shutdown, bytes(16)),
    ])}
    domains = hv.list_domains()
    assert sorted(domains) == [0, 3, 7, 9]
    assert domains[0].state == "running" and domains[0].uuid == "00000000-0000-0000-0000-000000000000"
    assert (domains[3].state, domains[3].shutdown_reason) == ("shutdown", "reboot")
    assert domains[3].uuid == "00010203-0405-0607-0809-0a0b0c0d0e0f"
    assert (domains[7].state, domains[7].shutdown_reason) == ("shutdown", "crash")
    assert domains[9].state == "dying"
    assert hv.domain_info(7).domid == 7 and hv.domain_info(5) is None


def test_event_channel_pending_drains_and_unmasks_each_port():
    ffi, _ = _libs_or_skip()
    read_end, write_end = os.pipe()
    unmasked = []

    class FakeEvtchn:
        def xenevtchn_pending(self, handle):
            data = os.read(read_end, 1)
            return data[0] if data else -1

        def xenevtchn_unmask(self, handle, port):
            unmasked.append(port)

    channels = object.__new__(xen.XenEventChannels)
    channels.ffi, channels.lib, channels.handle, channels.fd = ffi, FakeEvtchn(), None, read_end
    try:
        os.write(write_end, bytes([4, 9, 4]))
        assert channels.pending() == [4, 9]
        assert unmasked == [4, 9, 4]
        assert channels.pending() == []
    finally:
        os.close(read_end)
        os.close(write_end)
