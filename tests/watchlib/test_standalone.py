"""watchlib needs neither the daemon nor the C build: xsd imports from watchlib
(glob engine, mock table, socket rule), never the other way round."""
import os
import shutil
import subprocess
import sys

import watchlib
import xenstore_protocol

PROBE = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path
                    if not getattr(f, '__module__', '').startswith('__editable__')]
import watchlib, watchlib.client, watchlib.aio, watchlib.cli, watchlib.hypervisor
import watchlib.patterns as patterns, watchlib.globs as globs
assert 'xsd' not in sys.modules, sorted(m for m in sys.modules if m.startswith('xsd'))
assert patterns.BACKEND == 'python'
assert globs.PyGlobSet is patterns.PyGlobSet
print('OK')
"""


def test_watchlib_imports_and_matches_without_xsd(tmp_path):
    for package in (watchlib, xenstore_protocol):
        src = os.path.dirname(os.path.abspath(package.__file__))
        shutil.copytree(src, tmp_path / package.__name__,
                        ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WATCHLIB_MATCHER")}
    env["PYTHONPATH"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "OK", proc.stderr
