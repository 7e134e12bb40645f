"""The C tests, under AddressSanitizer and UndefinedBehaviorSanitizer, from pytest.

Configures CMakeLists.txt in a temporary build directory (Debug, ASan+UBSan,
no recovery, warnings as errors), builds it, runs ctest (unit tests, white-box
invariants, allocation-failure tests, fuzz smoke runs) for the trie, the
node store, the request path (engine.c), transactions (txn.c), the journal's record
(journal_enc.c), the watch registry (watchreg.c) and the sockets' poller (poller.c), then
runs each libFuzzer target for a bounded time. Skips only when cmake or a C compiler is
genuinely missing; the project's setup installs them (Debian: cmake, clang, and
libclang-rt-14-dev for clang's sanitizer and libFuzzer runtimes). Uses clang
when present (needed for the fuzz target), else cc.

XSD_FUZZ_SECONDS bounds each fuzz run (default 20 s for the trie, 10 s for
the node store, the request path, the watch registry and the poller); as many run at
once as ctest runs tests (JOBS).
"""
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CMAKE = shutil.which("cmake")
CTEST = shutil.which("ctest")
CLANG = shutil.which("clang")
CC = CLANG or shutil.which("cc") or shutil.which("gcc")
FUZZ_SECONDS = int(os.environ.get("XSD_FUZZ_SECONDS", "20"))
STORE_FUZZ_SECONDS = int(os.environ.get("XSD_FUZZ_SECONDS", "10"))
JOBS = str(max(1, min(4, os.cpu_count() or 1)))

pytestmark = pytest.mark.skipif(
    CMAKE is None or CTEST is None or CC is None,
    reason="cmake/ctest or a C compiler is missing (the project's setup "
           "installs cmake, clang and libclang-rt-14-dev)")


def run(cmd, cwd, timeout, env=None):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, "%s failed (%d)\n--- stdout\n%s\n--- stderr\n%s" % (
        " ".join(cmd), r.returncode, r.stdout[-6000:], r.stderr[-6000:])
    return r


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    """Configure and build once for the module."""
    build = tmp_path_factory.mktemp("cbuild")
    env = dict(os.environ, CC=CC)
    run([CMAKE, "-S", ROOT, "-B", str(build), "-DCMAKE_BUILD_TYPE=Debug",
         "-DXSD_SANITIZE=ON", "-DXSD_WERROR=ON"], ROOT, 120, env)
    run([CMAKE, "--build", str(build), "-j", JOBS], ROOT, 300, env)
    return build


def test_ctest_under_asan_and_ubsan(build_dir):
    r = run([CTEST, "--output-on-failure", "-j", JOBS], str(build_dir), 300)
    assert "tests passed" in r.stdout
    for name in ("trie", "whitebox", "alloc_fail", "store", "store_alloc_fail", "engine",
                 "engine_alloc_fail", "journal", "journal_alloc_fail", "txn", "txn_alloc_fail",
                 "watchreg", "watchreg_alloc_fail", "perms", "engine_txn_alloc_fail", "poller",
                 "poller_alloc_fail"):
        # each ran and passed ("1/7 Test #4: store ......   Passed"), not just "no tests"
        assert re.search(r"Test +#\d+: %s \.+ +Passed" % name, r.stdout), name


FUZZ_TARGETS = {"fuzz_trie": FUZZ_SECONDS, "fuzz_store": STORE_FUZZ_SECONDS,
                "fuzz_engine": STORE_FUZZ_SECONDS, "fuzz_watchreg": STORE_FUZZ_SECONDS,
                "fuzz_poller": STORE_FUZZ_SECONDS}


@pytest.fixture(scope="module")
def fuzz_runs(build_dir, tmp_path_factory):
    """Every libFuzzer target run for its bounded time, JOBS of them at once, longest first:
    a fuzzer is one process on one core, so run one after another they left the other
    cores idle for the whole run.  -> {target: (CompletedProcess or None if CMake did not
    build it, its artifacts directory)}"""
    def fuzz(target):
        fuzzer = build_dir / target
        out = tmp_path_factory.mktemp(target)
        if not fuzzer.exists():
            return None, out
        corpus = out / "corpus"
        corpus.mkdir()
        seconds = FUZZ_TARGETS[target]
        return subprocess.run(
            [str(fuzzer), "-max_total_time=%d" % seconds, "-timeout=10",
             "-rss_limit_mb=2048", "-print_final_stats=1",
             "-artifact_prefix=%s/" % out, str(corpus)],
            cwd=str(out), capture_output=True, text=True, timeout=seconds + 120), out

    order = sorted(FUZZ_TARGETS, key=FUZZ_TARGETS.get, reverse=True)
    with ThreadPoolExecutor(int(JOBS)) as pool:
        return dict(zip(order, pool.map(fuzz, order)))


@pytest.mark.skipif(CLANG is None, reason="libFuzzer needs clang")
@pytest.mark.parametrize("target", FUZZ_TARGETS)
def test_fuzz_target_runs_clean_for_a_bounded_time(fuzz_runs, target):
    r, out = fuzz_runs[target]
    assert r is not None, "CMake did not build %s with clang" % target
    crashes = [p.name for p in out.iterdir()
               if p.name.startswith(("crash-", "leak-", "timeout-", "oom-"))]
    assert r.returncode == 0 and not crashes, (
        "%s found something: %s\n%s" % (target, crashes, r.stderr[-6000:]))
    runs = [line for line in r.stderr.splitlines()
            if line.startswith("stat::number_of_executed_units")]
    assert runs and int(runs[0].split(":")[-1]) > 1000, r.stderr[-2000:]
