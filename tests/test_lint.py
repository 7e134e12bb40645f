"""The tree passes the linter configured in pyproject.toml ([tool.ruff])."""
import shutil
import subprocess
import sys

from tests.daemon_process import ROOT


def test_the_tree_passes_ruff():
    ruff = shutil.which("ruff") or f"{sys.prefix}/bin/ruff"
    result = subprocess.run([ruff, "check", "--no-cache", "."], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
