"""Run ``python -m xsd`` as a start-up would, for the tests of this package."""
import os
import subprocess
import sys

from tests.daemon_process import ROOT


def run_xsd(*args, env=None, timeout=20.0, capture_output=True,
            **kwargs) -> subprocess.CompletedProcess:
    """Run xsd to completion (for a start that must fail, or --help/--version)."""
    full_env = dict(os.environ if env is None else env)
    full_env.setdefault("PYTHONPATH", ROOT)
    return subprocess.run([sys.executable, "-m", "xsd", *args], cwd=ROOT, env=full_env,
                          capture_output=capture_output, text=True, timeout=timeout,
                          check=False, **kwargs)


def assert_one_line_failure(result, status: int, *fragments: str) -> None:
    """Exit ``status``, stderr one line naming every fragment, no traceback."""
    assert result.returncode == status, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("xsd: "), lines
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "Traceback" not in result.stderr
