"""xsd-hv create --introduce: with the daemon down the error names the socket and no
domain is left behind; a toolstack step refused half-way takes the domain back."""
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
