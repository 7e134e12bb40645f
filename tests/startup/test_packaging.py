"""The shipped systemd units: valid for systemd, and their xsd command lines parse."""
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from tests.daemon_process import ROOT
from xsd.__main__ import build_parser, parse_args

UNITS = ("packaging/xsd.service", "packaging/xenstored.service.d/xsd.conf")


def exec_start(path: str) -> list:
    text = open(os.path.join(ROOT, path), encoding="utf-8").read()
    lines = re.findall(r"^ExecStart=(.+)$", text, re.M)
    return shlex.split(lines[-1])


@pytest.mark.parametrize("unit", UNITS)
def test_unit_is_type_notify_and_its_command_line_parses(unit):
    text = open(os.path.join(ROOT, unit), encoding="utf-8").read()
    assert re.search(r"^Type=notify$", text, re.M)
    argv = [a for a in exec_start(unit) if not a.startswith("$")]
    assert argv[0].endswith("/xsd")
    args = build_parser().parse_args(argv[1:])
    assert args.hypervisor == "xen" and args.rundir == "/var/run/xenstored"


@pytest.mark.parametrize("unit", UNITS)
def test_unit_state_dir_is_gone_at_reboot(unit):
    """xenstore state must not outlive a boot (the toolstack rebuilds it;
    docs/durability.md): the journal goes in a tmpfs, /run or /var/run."""
    argv = [a for a in exec_start(unit) if not a.startswith("$")]
    config = parse_args(argv[1:])
    assert config.state_dir, "the unit persists to the run dir, not --no-persist"
    state_dir = os.path.normpath(config.state_dir)
    assert state_dir.startswith(("/run/", "/var/run/")), state_dir


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="no systemd-analyze")
def test_systemd_accepts_the_unit(tmp_path):
    text = open(os.path.join(ROOT, UNITS[0]), encoding="utf-8").read()
    # The unit names the installed path; point it at this interpreter for the check.
    text = text.replace("/usr/local/bin/xsd", f"{sys.executable} -m xsd")
    unit = tmp_path / "xsd.service"
    unit.write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True, timeout=60, check=False)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if "xsd.service" in line]
    assert not problems, problems
