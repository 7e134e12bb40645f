"""Debian's xenstore-utils against xsd and against Debian's C xenstored: same output.

Each script runs on a fresh xsd and a fresh C xenstored; every command's stdout,
stderr and exit code must be identical.  The tools are called by absolute path
(/usr/bin): our own shims of the same names live in the venv.
"""
import subprocess

import pytest

TOOLS = "/usr/bin"


def run_script(env, script):
    results = []
    for argv in script:
        tool, *args = argv
        proc = subprocess.run([f"{TOOLS}/{tool}", *args], env=env, capture_output=True, timeout=30)
        results.append((argv, proc.returncode, proc.stdout, proc.stderr))
    return results


BIG = [("xenstore-write",) + tuple(x for i in range(300) for x in (f"/big/entry-with-long-name-{i:04d}", str(i)))]

SCRIPTS = {
    "write-read": [
        ("xenstore-write", "/a/b", "hello", "/a/c", "world"),
        ("xenstore-read", "/a/b", "/a/c"),
        ("xenstore-read", "-p", "/a/b"),
        ("xenstore-read", "/a/missing"),
        ("xenstore-read", "/a/b", "/a/missing"),
        ("xenstore-write", "/bad//path", "x"),
        ("xenstore-write", "/ok", "1", "/bad.", "2"),
        ("xenstore-read", "/ok"),
        ("xenstore-write", "odd"),
    ],
    "escapes": [
        ("xenstore-write", "/e", "tab\there\x01\x7f end"),
        ("xenstore-read", "/e"),
        ("xenstore-read", "-R", "/e"),
        ("xenstore-ls", "-f", "/e"),
    ],
    "ls-list-exists": [
        ("xenstore-write", "/l/x", "1", "/l/y/z", "2", "/l/long", "v" * 200),
        ("xenstore-ls", "/l"),
        ("xenstore-ls", "-f", "/l"),
        ("xenstore-ls", "-p", "/l"),
        ("xenstore-ls", "-f", "-p", "/l"),
        ("xenstore-ls", "/nope"),
        ("xenstore-ls",),
        ("xenstore-list", "/l"),
        ("xenstore-list", "-p", "/l"),
        ("xenstore-list", "/nope"),
        ("xenstore-exists", "/l/x"),
        ("xenstore-exists", "/l/nope"),
    ],
    "rm-chmod": [
        ("xenstore-write", "/r/a/b", "1", "/r/c", "2"),
        ("xenstore-rm", "/r/a"),
        ("xenstore-rm", "/r/missing"),
        ("xenstore-rm", "/nothing/below"),
        ("xenstore-ls", "-f", "/r"),
        ("xenstore-chmod", "/r", "n0", "r1", "w2", "b3"),
        ("xenstore-ls", "-f", "-p", "/r"),
        ("xenstore-chmod", "-r", "/r", "b0"),
        ("xenstore-ls", "-p", "/r"),
        ("xenstore-chmod", "/missing", "n0"),
        ("xenstore-chmod", "/r", "x1"),
    ],
    "long-listing": BIG + [
        ("xenstore-list", "/big"),
        ("xenstore-ls", "/big"),
    ],
    "watch-count": [
        ("xenstore-write", "/w", "1"),
        ("xenstore-watch", "-n", "1", "/w"),
    ],
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_xenstore_utils_output_matches_c_xenstored(name, daemon_factory, cxenstored):
    # Without a toolstack C xenstored has no /local/domain/0: start xsd the same way.
    daemon = daemon_factory("--no-domain-init")
    ours = run_script(daemon.client_env, SCRIPTS[name])
    theirs = run_script(cxenstored.client_env, SCRIPTS[name])
    for mine, ref in zip(ours, theirs):
        assert mine == ref, f"{mine[0]}: xsd gave {mine[1:]}, C xenstored {ref[1:]}"


def test_xenstore_watch_sees_each_change(daemon):
    watcher = subprocess.Popen([f"{TOOLS}/xenstore-watch", "-n", "3", "/wx"], env=daemon.client_env,
                               stdout=subprocess.PIPE, text=True)
    try:
        first = watcher.stdout.readline()        # the initial event: registered now
        for value in ("1", "2"):
            subprocess.run([f"{TOOLS}/xenstore-write", "/wx/k", value], env=daemon.client_env, check=True)
        out, _ = watcher.communicate(timeout=10)
    finally:
        watcher.kill()
    assert [first.strip()] + out.split() == ["/wx", "/wx/k", "/wx/k"]
    assert watcher.returncode == 0


def test_test_xenstore_suite_passes(daemon):
    """Xen's own functional test of a xenstored (tools/tests/xenstore)."""
    proc = subprocess.run(["/usr/lib/xen-4.17/bin/test-xenstore"], env=daemon.client_env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "failed" not in proc.stdout, proc.stdout
    assert proc.stdout.count("ns") >= 12, proc.stdout
