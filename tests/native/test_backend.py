"""Which backend xsd._native runs on, and the build stamp that guards it.

The suite fails when the compiled backend is not in use, unless the run asked
for the fallback explicitly with XSD_NATIVE=python: a missing or stale build
must never slip through as "tests passed on pygtrie".
"""
import importlib
import os
import re
import shutil
import subprocess
import sys

import pytest

import xsd._native
from xsd._native import pytrie

NATIVE_DIR = os.path.dirname(os.path.abspath(xsd._native.__file__))
EXPLICIT_PYTHON = os.environ.get("XSD_NATIVE", "").strip().lower() == "python"

needs_c = pytest.mark.skipif(
    EXPLICIT_PYTHON, reason="XSD_NATIVE=python asked for the fallback")

PROBE = (
    "import sys\n"
    # An editable install (pip install -e .) adds a finder that serves
    # submodules missing from a copy out of the checkout; hide it so that a
    # copy of the package is all the probe can see.
    "sys.meta_path[:] = [f for f in sys.meta_path\n"
    "                    if not getattr(f, '__module__', '').startswith('__editable__')]\n"
    "import xsd._native as n\n"
    "ext = sys.modules.get('xsd._native._xsd_native')\n"
    "print('BACKEND=' + n.BACKEND)\n"
    "print('FILE=' + n.__file__)\n"
    "print('EXT=' + str(ext and ext.__file__))\n"
    "print('CLASS=' + n.WatchTrie.__module__)\n"
    "print('REASON=' + str(n.FALLBACK_REASON))\n"
)


def run_probe(env_value, pythonpath=None):
    """Import xsd._native in a fresh interpreter with XSD_NATIVE=env_value."""
    env = dict(os.environ)
    env.pop("XSD_NATIVE", None)
    if env_value is not None:
        env["XSD_NATIVE"] = env_value
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run([sys.executable, "-c", PROBE], env=env,
                          cwd=pythonpath or os.getcwd(), capture_output=True,
                          text=True, timeout=60)


def fields(stdout):
    return dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)


def copy_package(tmp_path, with_extension=True):
    """A private copy of xsd._native under tmp_path/xsd, importable through
    PYTHONPATH ahead of the checkout, to tamper with safely; with the
    packages its pure-Python fallback imports (watchlib's glob engine)."""
    for package in ("watchlib", "xenstore_protocol"):
        src = os.path.dirname(os.path.abspath(importlib.import_module(package).__file__))
        shutil.copytree(src, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    dest = tmp_path / "xsd" / "_native"
    dest.mkdir(parents=True)
    (tmp_path / "xsd" / "__init__.py").write_text("")
    for name in os.listdir(NATIVE_DIR):
        is_ext = name.startswith("_xsd_native.") and name.endswith(".so")
        if name.endswith((".py", ".c", ".h", ".cdef")) or (is_ext and with_extension):
            if name == "_xsd_native.c":   # cffi's generated file, not a source
                continue
            shutil.copy2(os.path.join(NATIVE_DIR, name), dest / name)
    return dest


@needs_c
def test_compiled_backend_is_in_use():
    assert xsd._native.BACKEND == "cffi", (
        "the C extension is not in use (fallback reason: %s); build it with "
        "`pip install -e .`, or set XSD_NATIVE=python to test the fallback "
        "on purpose" % xsd._native.FALLBACK_REASON)
    assert xsd._native.FALLBACK_REASON is None
    assert xsd._native.WatchTrie.__module__ == "xsd._native.trie"
    assert xsd._native.BACKEND_INFO.startswith("cffi (stamp ")


def test_backend_matches_the_environment():
    if EXPLICIT_PYTHON:
        assert xsd._native.BACKEND == "python"
        assert xsd._native.WatchTrie is pytrie.WatchTrie
    assert xsd._native.BACKEND in ("cffi", "python")
    assert xsd._native.MATCH_ANCESTORS == 1
    assert xsd._native.MATCH_DESCENDANTS == 2


@needs_c
def test_stamp_of_the_build_matches_the_sources():
    from xsd._native import build_native, trie
    assert trie.STAMP_FILES == build_native.STAMP_FILES
    assert trie.source_stamp(NATIVE_DIR) == build_native.source_stamp(NATIVE_DIR)
    assert trie.STAMP == trie.source_stamp(NATIVE_DIR)


def test_stamp_covers_every_file_the_c_sources_include():
    """A local header the cffi build compiles in but the stamp does not hash
    would let a stale build pass the import check (sourcestamp.py)."""
    from xsd._native import sourcestamp
    include = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
    seen, todo = set(), [n for n in sourcestamp.STAMP_FILES if n.endswith(".c")]
    while todo:
        name = todo.pop()
        seen.add(name)
        with open(os.path.join(NATIVE_DIR, name)) as f:
            todo.extend(set(include.findall(f.read())) - seen)
    assert seen <= set(sourcestamp.STAMP_FILES), sorted(seen - set(sourcestamp.STAMP_FILES))
    assert "hash.h" in seen


@needs_c
def test_check_stamp_rejects_a_mismatch(tmp_path):
    from xsd._native import trie
    with pytest.raises(trie.StaleBuildError, match="stale"):
        trie.check_stamp("0" * 32)
    with pytest.raises(trie.StaleBuildError, match="sources are missing"):
        trie.check_stamp(trie.STAMP, str(tmp_path))
    assert issubclass(trie.StaleBuildError, ImportError)


def test_xsd_native_python_selects_the_fallback():
    r = run_probe("python")
    assert r.returncode == 0, r.stderr
    f = fields(r.stdout)
    assert f["BACKEND"] == "python"
    assert f["CLASS"] == "xsd._native.pytrie"
    assert f["REASON"] == "None"


@needs_c
def test_xsd_native_c_selects_the_extension():
    r = run_probe("c")
    assert r.returncode == 0, r.stderr
    f = fields(r.stdout)
    assert f["BACKEND"] == "cffi"
    assert f["CLASS"] == "xsd._native.trie"


@needs_c
def test_xsd_native_auto_is_the_default_and_prefers_c():
    for value in (None, "auto", "AUTO", ""):
        r = run_probe(value)
        assert r.returncode == 0, r.stderr
        assert fields(r.stdout)["BACKEND"] == "cffi"
        assert "falling back" not in r.stderr


def test_unknown_xsd_native_value_fails():
    r = run_probe("fortran")
    assert r.returncode != 0
    assert "XSD_NATIVE='fortran'" in r.stderr


@needs_c
def test_untouched_copy_uses_c(tmp_path):
    """Control for the tampering tests below: the copy itself is sound."""
    copy_package(tmp_path)
    r = run_probe("c", str(tmp_path))
    assert r.returncode == 0, r.stderr
    f = fields(r.stdout)
    assert f["FILE"].startswith(str(tmp_path))
    assert f["EXT"].startswith(str(tmp_path))
    assert f["BACKEND"] == "cffi"


@needs_c
def test_stale_extension_fails_loudly_under_c(tmp_path):
    dest = copy_package(tmp_path)
    with open(dest / "trie.c", "a") as f:
        f.write("\n/* edited after the build */\n")
    r = run_probe("c", str(tmp_path))
    assert r.returncode != 0
    assert "XSD_NATIVE=c" in r.stderr
    assert "is stale" in r.stderr
    assert "Rebuild" in r.stderr


@needs_c
def test_stale_extension_is_reported_not_used_under_auto(tmp_path):
    dest = copy_package(tmp_path)
    with open(dest / "native.cdef", "a") as f:
        f.write("\n/* edited after the build */\n")
    r = run_probe("auto", str(tmp_path))
    assert r.returncode == 0, r.stderr
    f = fields(r.stdout)
    assert f["FILE"].startswith(str(tmp_path))
    assert f["BACKEND"] == "python"
    assert "StaleBuildError" in f["REASON"]
    assert "falling back to pygtrie" in r.stderr   # logged as a warning


def test_missing_extension_fails_under_c_and_falls_back_under_auto(tmp_path):
    copy_package(tmp_path, with_extension=False)
    r = run_probe("c", str(tmp_path))
    assert r.returncode != 0
    assert "XSD_NATIVE=c but the C extension cannot be used" in r.stderr
    r = run_probe("auto", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert fields(r.stdout)["BACKEND"] == "python"
    assert "falling back to pygtrie" in r.stderr
