"""xsd-hv create --introduce: with the daemon down the error names the socket and no
domain is left behind; a toolstack step refused half-way takes the domain back.  A run dir
with no mock hypervisor, a malformed uuid: one line, and nothing made."""
import json
import os
import subprocess
import sys

from tests.daemon_process import ROOT


def xsd_hv(rundir, *args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k not in ("XENSTORED_PATH", "XENSTORED_RUNDIR")}
    env["PYTHONPATH"] = ROOT
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "xsd.hv_cli", "--rundir", str(rundir), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=30,
                          check=False)


def domids(rundir) -> list:
    result = xsd_hv(rundir, "list", "--json")
    if result.returncode == 1 and "no simulated hypervisor" in result.stderr:
        return []
    assert result.returncode == 0, result.stderr
    return [row["domid"] for row in json.loads(result.stdout)]


def test_daemon_down_names_the_socket_and_makes_nothing(tmp_path):
    run = tmp_path / "run"
    result = xsd_hv(run, "create", "--name", "demo", "--introduce")
    assert result.returncode == 1
    assert result.stderr == f"xsd-hv: cannot reach xsd at {run}/socket: No such file or directory\n"
    assert result.stdout == ""
    assert domids(run) in ([], [0])


def test_refused_half_way_takes_the_domain_back(daemon):
    run = daemon.rundir
    before = domids(run)
    # The read-only socket answers, but refuses the toolstack's first write (EROFS).
    result = xsd_hv(run, "create", "--name", "demo", "--introduce",
                    env_extra={"XENSTORED_PATH": daemon.ro_socket_path})
    assert result.returncode == 1
    assert "EROFS" in result.stderr
    assert domids(run) == before
    ok = xsd_hv(run, "create", "--name", "demo", "--introduce")     # and it still works
    assert ok.returncode == 0, ok.stderr
    assert int(ok.stdout) in domids(run)


def test_no_simulated_hypervisor_is_one_line(tmp_path):
    missing = tmp_path / "nonexistent"
    for args in (["list"], ["list", "--json"], ["shutdown", "1"], ["destroy", "1"]):
        result = xsd_hv(missing, *args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert result.stdout == ""
        assert result.stderr == (f"xsd-hv: no simulated hypervisor at {missing} (no "
                                 "mock-hypervisor.json there; start xsd with its mock "
                                 "hypervisor there, or xsd-hv create)\n")
    assert not missing.exists()


def test_a_malformed_uuid_is_refused(daemon):
    run = daemon.rundir
    before = domids(run)
    for bad in ("not-a-uuid", "6b8e1f0a3c2d4e5f8a9b0c1d2e3f4a5b",
                "6b8e1f0a-3c2d-4e5f-8a9b-0c1d2e3f4a5", "../../x", ""):
        result = xsd_hv(run, "create", "--uuid", bad, "--introduce")
        assert result.returncode == 2, (bad, result.stderr)
        assert result.stderr.startswith("xsd-hv create: argument --uuid: ")
        assert len(result.stderr.splitlines()) == 1, result.stderr
    assert domids(run) == before
    ls = subprocess.run([sys.executable, "-m", "watchlib.cli", "ls", "/vm"], cwd=ROOT,
                        env=dict(os.environ, PYTHONPATH=ROOT, XENSTORED_PATH=daemon.socket_path),
                        capture_output=True, text=True, timeout=30)
    assert "not-a-uuid" not in ls.stdout and "x" not in ls.stdout.split()
    good = "6B8E1F0A-3C2D-4E5F-8A9B-0C1D2E3F4A5B"
    ok = xsd_hv(run, "create", "--uuid", good, "--introduce")
    assert ok.returncode == 0, ok.stderr
    listed = {row["domid"]: row for row in json.loads(xsd_hv(run, "list", "--json").stdout)}
    assert listed[int(ok.stdout)]["uuid"] == good.lower()


def test_help_states_the_rundir_rule():
    result = subprocess.run([sys.executable, "-m", "xsd.hv_cli", "--help"], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True,
                            text=True, timeout=30)
    text = " ".join(result.stdout.split())
    assert "(default: $XENSTORED_RUNDIR, else the directory of $XENSTORED_PATH, else " \
           "/var/run/xenstored)" in text
