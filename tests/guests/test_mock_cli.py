"""The mock hypervisor from outside: ``xsd-hv``, the table shared with watchlib, the Xen tools."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from xenstore_protocol import Op

from xsd import hv_cli
from xsd.hypervisor.mock import MockControl, TABLE

from .conftest import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_cli(capsys, *argv):
    rc = hv_cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_xsd_hv_drives_the_domain_table(tmp_path, capsys):
    rundir = str(tmp_path)
    assert run_cli(capsys, "--rundir", rundir, "create", "--name", "web") == (0, "1\n", "")
    assert run_cli(capsys, "--rundir", rundir, "create", "--domid", "5")[:2] == (0, "5\n")
    assert run_cli(capsys, "--rundir", rundir, "shutdown", "1", "--reason", "reboot")[0] == 0
    assert run_cli(capsys, "--rundir", rundir, "crash", "5")[0] == 0
    rc, out, _ = run_cli(capsys, "--rundir", rundir, "list", "--json")
    table = {d["domid"]: d for d in json.loads(out)}
    assert (table[1]["state"], table[1]["shutdown_reason"], table[1]["name"]) == ("shutdown", "reboot", "web")
    assert (table[5]["state"], table[5]["shutdown_reason"]) == ("shutdown", "crash")
    assert table[0]["state"] == "running"
    assert run_cli(capsys, "--rundir", rundir, "resume", "5")[0] == 0
    ring = MockControl(rundir).record(1).path("ring", rundir)
    assert os.path.getsize(ring) == 4096
    assert run_cli(capsys, "--rundir", rundir, "destroy", "1")[0] == 0
    assert not os.path.exists(ring)
    rc, out, _ = run_cli(capsys, "--rundir", rundir, "list")
    assert "running" in out and "web" not in out
    assert run_cli(capsys, "--rundir", rundir, "create")[1] == "6\n"    # fresh ids, as Xen's rover
    rc, _, err = run_cli(capsys, "--rundir", rundir, "destroy", "99")
    assert rc == 1 and "no domain 99" in err
    rc, _, err = run_cli(capsys, "--rundir", rundir, "create", "--domid", "5")
    assert rc == 1 and "already exists" in err
    rc, _, err = run_cli(capsys, "--rundir", rundir, "destroy", "0")
    assert rc == 1


def test_the_table_is_the_one_watchlib_reads_and_writes(daemon, toolstack, watcher):
    hypervisor = pytest.importorskip("watchlib.hypervisor")
    theirs = hypervisor.MockHypervisor(os.path.join(daemon.rundir, TABLE))
    mine = MockControl(daemon.rundir)
    row = mine.create(name="shared")
    assert hypervisor.DomainInfo(row.domid, row["uuid"], "running", None) in theirs.list_domains()
    theirs.create(12, uuid="u12")                       # a domain without a ring page
    assert [i.uuid for i in mine.list() if i.domid == 12] == ["u12"]
    assert mine.record(row.domid)["ring"]               # our keys survive their rewrite
    toolstack.ok(Op.INTRODUCE, b"12", b"1", b"1")        # introduced, served without a ring
    assert watcher.wait_events(1) == [(b"@introduceDomain", b"in")]
    theirs.shutdown(12, "poweroff")                      # their edit raises VIRQ_DOM_EXC too
    assert watcher.wait_events(1) == [(b"@releaseDomain", b"out")]
    theirs.destroy(12)
    assert watcher.wait_events(1) == [(b"@releaseDomain", b"out")]
    assert toolstack.ok(Op.IS_DOMAIN_INTRODUCED, b"12") == b"F\0"


def _cli(daemon, *argv, check=True):
    env = dict(daemon.client_env, PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, "-m", "xsd.hv_cli", *argv], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_readme_demo_a_guest_appears_to_the_xen_tools(daemon):
    """What the README shows: xenstore-watch sees the guest come and go; the guest is domain N."""
    if not (shutil.which("xenstore-watch") and shutil.which("xenstore-ls")):
        pytest.skip("xenstore-utils not installed")
    watch = subprocess.Popen(["xenstore-watch", "-n", "3", "@introduceDomain"], env=daemon.client_env,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert watch.stdout.readline().strip() == "@introduceDomain"      # the initial event
        domid = _cli(daemon, "create", "--name", "demo", "--introduce").stdout.strip()
        assert watch.stdout.readline().strip() == "@introduceDomain"
        listing = subprocess.run(["xenstore-ls", "-f", f"/local/domain/{domid}"], env=daemon.client_env,
                                 capture_output=True, text=True, check=True).stdout
        assert f'/local/domain/{domid}/name = "demo"' in listing
        _cli(daemon, "guest", domid, "write", "data/hello", "world")
        assert _cli(daemon, "guest", domid, "read", "data/hello").stdout == "world\n"
        refused = _cli(daemon, "guest", domid, "read", "/local/domain/0/name", check=False)
        assert refused.returncode == 1 and "EACCES" in refused.stderr
        read = subprocess.run(["xenstore-read", f"/local/domain/{domid}/data/hello"],
                              env=daemon.client_env, capture_output=True, text=True, check=True)
        assert read.stdout == "world\n"
        _cli(daemon, "destroy", domid, "--cleanup")
        wait_for(lambda: subprocess.run(["xenstore-exists", f"/local/domain/{domid}"],
                                        env=daemon.client_env).returncode == 1,
                 what="the guest's home removed")
    finally:
        watch.kill()
        watch.wait()
