"""Domain reconciliation through the mock hypervisor and the real daemon's @introduce/@releaseDomain."""
import json

import pytest

from watchlib import XenstoreError, domains
from watchlib.domains import diff
from watchlib.hypervisor import DomainInfo, MockHypervisor, default_hypervisor


@pytest.fixture
def hv(daemon):
    return MockHypervisor(f"{daemon.rundir}/mock-hypervisor.json")


def release(client, domid):
    """RELEASE, unless the daemon already did: xsd watches the mock's table and
    releases a domain that shut down or vanished by itself (VIRQ_DOM_EXC), C
    xenstored only on an explicit RELEASE.  Either way @releaseDomain fires."""
    try:
        client.release(domid)
    except XenstoreError as e:
        assert e.name == "ENOENT"


class Record:
    def __init__(self):
        self.calls = []

    def added(self, info):
        self.calls.append(("added", info.domid, info.uuid, info.state, info.shutdown_reason))

    def removed(self, info):
        self.calls.append(("removed", info.domid))

    def changed(self, info, previous):
        self.calls.append(("changed", info.domid, previous.state, info.state,
                           info.shutdown_reason))


def test_first_scan_reports_existing_domains(client, hv):
    hv.create(3, uuid="u3")
    rec = Record()
    with domains(rec.added, rec.removed, rec.changed, hypervisor=hv, client=client) as w:
        w.sync()
    assert rec.calls == [
        ("added", 0, "00000000-0000-0000-0000-000000000000", "running", None),
        ("added", 3, "u3", "running", None)]


def test_introduce_shutdown_destroy_release(client, hv):
    rec = Record()
    with domains(rec.added, rec.removed, rec.changed, hypervisor=hv, client=client) as w:
        w.sync()
        rec.calls.clear()

        hv.create(5, uuid="u5")
        client.introduce(5, 100, 1)           # fires @introduceDomain
        w.sync()
        assert rec.calls == [("added", 5, "u5", "running", None)]

        hv.create(6, uuid="u6")
        client.introduce(6, 101, 1)
        w.sync()
        rec.calls.clear()

        hv.shutdown(5, "reboot")
        release(client, 5)                    # fires @releaseDomain
        w.sync()
        assert rec.calls == [("changed", 5, "running", "shutdown", "reboot")]

        hv.destroy(6)
        release(client, 6)
        w.sync()
        assert rec.calls[-1] == ("removed", 6)
        assert set(w.domains) == {0, 5}


def test_a_burst_of_introductions_is_debounced(client, hv):
    rec = Record()
    with domains(rec.added, rec.removed, hypervisor=hv, client=client, debounce=0.2) as w:
        w.sync()
        before = w.scans
        for d in range(10, 20):
            hv.create(d)
        # Pipelined: all ten INTRODUCEs are on the wire before the first reply.
        pendings = [client._conn.send(8, b"%d\0%d\0%d\0" % (d, d, 1)) for d in range(10, 20)]
        for p in pendings:
            client._conn.wait(p, 10)
        w.sync()
        assert [c[1] for c in rec.calls if c[0] == "added"][-10:] == list(range(10, 20))
        # Ten events, far fewer scans (one, unless the machine stalls mid-burst).
        assert w.scans - before < 10


def test_callback_exceptions_are_logged_not_fatal(client, hv, caplog):
    def bad(info):
        raise RuntimeError("domain callback bug")

    with domains(bad, bad, hypervisor=hv, client=client) as w:
        w.sync()
        hv.create(8)
        client.introduce(8, 1, 1)
        w.sync()
        assert 8 in w.domains
    assert any(r.exc_info and "domain callback bug" in str(r.exc_info[1]) for r in caplog.records)


def test_resync_triggers_a_scan(daemon, client, hv):
    rec = Record()
    with domains(rec.added, rec.removed, hypervisor=hv, client=client) as w:
        w.sync()
        hv.create(4)                          # no event: only the rescan after Resync finds it
        daemon.stop()
        daemon.start()
        w.sync()
        from .conftest import wait_for
        wait_for(lambda: 4 in w.domains, what="rescan after Resync")
    assert ("added", 4) in [(c[0], c[1]) for c in rec.calls]


def test_diff():
    a = {1: DomainInfo(1, "a"), 2: DomainInfo(2, "b")}
    b = {2: DomainInfo(2, "b", "shutdown", "crash"), 3: DomainInfo(3, "c")}
    added, removed, changed = diff(a, b)
    assert added == [b[3]] and removed == [a[1]] and changed == [(b[2], a[2])]


def test_mock_file_format(tmp_path):
    path = tmp_path / "mock.json"
    hv = MockHypervisor(path)
    hv.create(2, uuid="x")
    hv.shutdown(2, "crash")
    data = json.loads(path.read_text())
    assert data == {"version": 1, "domains": [
        {"domid": 0, "uuid": "00000000-0000-0000-0000-000000000000", "state": "running",
         "shutdown_reason": None},
        {"domid": 2, "uuid": "x", "state": "shutdown", "shutdown_reason": "crash"}]}
    with pytest.raises(ValueError):
        hv.create(2)
    with pytest.raises(ValueError):
        hv.shutdown(2, "nap")
    hv.destroy(2)
    with pytest.raises(KeyError):
        hv.destroy(2)
    assert [d.domid for d in MockHypervisor(path).list_domains()] == [0]


def test_default_hypervisor(monkeypatch, tmp_path):
    monkeypatch.delenv("XSD_MOCK_HYPERVISOR", raising=False)
    with pytest.raises(RuntimeError):
        default_hypervisor()
    monkeypatch.setenv("XSD_MOCK_HYPERVISOR", str(tmp_path / "m.json"))
    assert isinstance(default_hypervisor(), MockHypervisor)


def test_xen_backend_names_what_is_missing_and_is_never_the_mock(monkeypatch):
    """No Xen here: the libxenctrl adapter fails loudly; default_hypervisor never falls back."""
    from watchlib import hypervisor
    monkeypatch.delenv(hypervisor.MOCK_ENV, raising=False)
    with pytest.raises(Exception) as failure:
        hypervisor.XenHypervisor().list_domains()
    assert "xen" in str(failure.value).lower()
    with pytest.raises(RuntimeError, match="not a Xen host"):
        hypervisor.default_hypervisor()


def test_one_table_for_the_daemon_and_watchlib(tmp_path):
    """xsd's mock and watchlib's read and edit one file, through one format and lock module."""
    from watchlib import mock_table
    from xsd.hypervisor.base import HypervisorError
    from xsd.hypervisor.mock import MockControl, load_table
    control = MockControl(tmp_path)
    control.ensure()
    hv = MockHypervisor(tmp_path / mock_table.FILE_NAME)
    row = control.create("web")
    assert hv.get(row.domid) == DomainInfo(row.domid, row["uuid"], "running", None)
    hv.shutdown(row.domid, "reboot")
    assert control.record(row.domid).info().shutdown_reason == "reboot"
    assert control.record(row.domid)["name"] == "web"        # xsd's keys survive watchlib's edit
    hv.create(40, uuid="u40")
    assert [r.domid for r in control.domains()] == [0, row.domid, 40]
    # A table neither side can read: one error type underneath, each side's own on top.
    (tmp_path / mock_table.FILE_NAME).write_text('{"version": 2, "domains": []}')
    with pytest.raises(mock_table.TableError, match="version 2"):
        hv.list_domains()
    with pytest.raises(HypervisorError, match="version 2"):
        load_table(tmp_path)
