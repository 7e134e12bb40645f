"""--version on xsd, xsd-hv and every xenstore-* shim: one version, from xsd/__init__.py."""
import re
import subprocess
import sys

import pytest

from tests.daemon_process import ROOT
from xsd import __version__


def console_scripts() -> list:
    text = open(f"{ROOT}/setup.py", encoding="utf-8").read()
    return re.findall(r'"([\w-]+) = ([\w.]+):(\w+)"', text)


def test_every_console_script_is_listed():
    names = {name for name, _module, _func in console_scripts()}
    assert {"xsd", "xsd-hv", "xenstore", "xenstore-control", "xenstore-read"} <= names


@pytest.mark.parametrize("name, module, func", console_scripts())
def test_version(name, module, func):
    code = (f"import sys; sys.argv[0] = {name!r}; from {module} import {func}; "
            f"sys.exit({func}())")
    result = subprocess.run([sys.executable, "-c", code, "--version"], cwd=ROOT,
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() in (f"{name} {__version__}", f"{name} (xsd) {__version__}")
