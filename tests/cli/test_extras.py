"""What the shims do beyond xenstore-utils: --json, and xenstore-watch --value."""
import base64
import json
import os
import subprocess
import sys

import pytest

from tests.cli import harness
from tests.daemon_process import DaemonProcess


@pytest.fixture(scope="module")
def env(cli_daemon):
    return harness.client_env(cli_daemon.socket_path)


def ours(form, args, env):
    return harness.run_ours(form, args, env)


def test_read_json_gives_an_object_in_argument_order(env):
    r = ours("read", ["--json", "/t/a", "/t/bin", "/t/utf8", "rel"], env)
    assert (r.rc, r.stderr) == (0, b"")
    data = json.loads(r.stdout)
    assert list(data) == ["/t/a", "/t/bin", "/t/utf8", "rel"]
    assert data["/t/a"] == "hello"
    assert data["/t/utf8"] == "grüße"
    assert data["rel"] == "relative"
    # Not UTF-8: the exact bytes, in base64.
    assert base64.b64decode(data["/t/bin"]["base64"]) == b"tab\there\x01x\x7f\\ \xff\x00end\n\r\x1b"


def test_read_json_of_a_missing_key_prints_nothing_and_fails_as_plain_read(env):
    r = ours("read", ["--json", "/t/a", "/t/missing"], env)
    assert r == (1, b"", b"xenstore-read: couldn't read path /t/missing\n")


def test_list_json_maps_each_key_to_its_children(env):
    r = ours("list", ["--json", "/t/deep", "/t/deep/e", "/t/a"], env)
    assert (r.rc, r.stderr) == (0, b"")
    assert json.loads(r.stdout) == {"/t/deep": ["e"], "/t/deep/e": ["f"], "/t/a": []}


def test_list_json_of_a_long_listing(env):
    r = ours("list", ["--json", "/t/big"], env)
    names = json.loads(r.stdout)["/t/big"]
    assert len(names) == 150 and len("\0".join(names)) > 4096


def test_ls_json_is_flat_by_full_path(env):
    r = ours("ls", ["--json", "/t/deep"], env)
    assert (r.rc, r.stderr) == (0, b"")
    assert json.loads(r.stdout) == {
        "/t/deep/e": {"value": ""}, "/t/deep/e/f": {"value": ""}, "/t/deep/e/f/g": {"value": "1"}}


def test_ls_json_with_permissions(env):
    r = ours("ls", ["--json", "-p", "/t"], env)
    data = json.loads(r.stdout)
    assert data["/t/perm"] == {"value": "p", "perms": ["n0", "r5", "w7", "b9"]}
    assert data["/t/a"] == {"value": "hello", "perms": ["n0"]}
    assert data["/t/chain" + "/c" * 130] == {"value": "end", "perms": ["n0"]}


def test_ls_json_of_a_missing_path_fails_as_plain_ls(env):
    r = ours("ls", ["--json", "/t/missing"], env)
    assert r == (1, b"", b"xenstore-ls: xs_directory (/t/missing): No such file or directory\n")


def test_extension_options_must_be_spelled_out(env):
    # Abbreviations stay what they are for xenstore-utils: unknown options.
    r = ours("ls", ["--js", "/t/deep"], env)
    assert r.stderr.startswith(b"/usr/bin/xenstore-ls: unrecognized option '--js'\n")
    r = ours("write", ["--json", "/t/x"], env)
    assert r.stderr == (b"/usr/bin/xenstore-write: unrecognized option '--json'\n"
                        b"xenstore-write: Usage: /usr/bin/xenstore-write [-h] [-s] [-R] key value [...]\n")


class Watcher:
    """A running xenstore-watch shim; ``line()`` waits for its next output line."""

    def __init__(self, args, env):
        self.proc = harness.start(harness.ours_command("watch", args), env)

    def line(self) -> bytes:
        line = self.proc.stdout.readline()
        assert line, self.proc.stderr.read()
        return line

    def finish(self):
        try:
            out, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        return self.proc.returncode, out, err


def test_watch_value_prints_each_event_with_the_value_read_then(cli_daemon, env):
    client = cli_daemon.client
    w = Watcher(["--value", "-n", "5", "/t/w", "@releaseDomain"], env)
    try:
        assert w.line() == b'/t/w = "watched"\n'
        assert w.line() == b"@releaseDomain\n"          # special names have no value
        client.write("/t/w", b"new\x01")
        assert w.line() == b'/t/w = "new\\001"\n'        # escaped as xenstore-read does
        client.write("/t/w/sub", b"s")
        assert w.line() == b'/t/w/sub = "s"\n'
        client.rm("/t/w")
        assert w.line() == b"/t/w\n"                     # gone: no value
        assert w.finish() == (0, b"", b"")
    finally:
        w.proc.kill()
        client.write("/t/w", b"watched")


def test_watch_json_lines(cli_daemon, env):
    client = cli_daemon.client
    w = Watcher(["--json", "--value", "-n", "3", "/t/w"], env)
    try:
        assert json.loads(w.line()) == {"path": "/t/w", "value": "watched"}
        client.write("/t/w", b"\xff")
        assert json.loads(w.line()) == {"path": "/t/w", "value": {"base64": "/w=="}}
        client.rm("/t/w")
        assert json.loads(w.line()) == {"path": "/t/w", "value": None}
        assert w.finish() == (0, b"", b"")
    finally:
        w.proc.kill()
        client.write("/t/w", b"watched")
    w = Watcher(["--json", "-n", "1", "/t/w"], env)
    assert json.loads(w.line()) == {"path": "/t/w"}
    assert w.finish()[0] == 0


@pytest.mark.parametrize("limit", [None, 5])
def test_watch_when_the_daemon_goes_away(limit, tmp_path):
    """C xenstore-watch then spins on failed reads (forever without -n); ours stops:
    exit 0 once -n is counted out, as the C tool would, else 1 with a message."""
    proc = DaemonProcess(tmp_path / "run").start()
    env = harness.client_env(proc.socket_path)
    args = (["-n", str(limit)] if limit else []) + ["/tool"]
    w = Watcher(args, env)
    try:
        assert w.line() == b"/tool\n"
    finally:
        proc.stop()
    rc, out, err = w.finish()
    if limit:
        assert (rc, out, err) == (0, b"", b"")
    else:
        assert (rc, out, err) == (1, b"", b"xenstore-watch: lost the connection to xenstored\n")


def test_python_dash_m_is_the_multi_call_form(env):
    cmd = [sys.executable, "-m", "watchlib.cli"]
    r = harness.run(cmd + ["read", "-p", "/t/a"], env)
    assert r == (0, b"/t/a: hello\n", b"")
    r = harness.run(cmd + ["read"], env)
    assert r == (1, b"", b"xenstore: Usage: xenstore read [-h] [-p] [-s] [-R] key [...]\n")


SCRIPTS = {"xenstore": "main", **{f"xenstore-{m}": f"{m}_main" for m in harness.MODES}}
# What pip writes for a console_scripts entry point.
WRAPPER = """#!{python}
import re
import sys
from watchlib.cli import {func}
if __name__ == "__main__":
    sys.argv[0] = re.sub(r"(-script\\.pyw|\\.exe)?$", "", sys.argv[0])
    sys.exit({func}())
"""


def _args_for(script):
    return ["read", "-p", "/t/a"] if script == "xenstore" else ["-h"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_entry_points_match_debian(script, env, tmp_path):
    """Each entry point, run as pip's console script, behaves as Debian's tool with the
    same argv[0] (the script's path, as the kernel hands it to Python)."""
    path = tmp_path / script
    path.write_text(WRAPPER.format(python=sys.executable, func=SCRIPTS[script]))
    path.chmod(0o755)
    args = _args_for(script)
    debian = harness.run([str(path), *args], env, executable=f"/usr/bin/{script}")
    assert harness.run([str(path), *args], env) == debian


@pytest.mark.parametrize("script", SCRIPTS)
def test_installed_console_scripts_match_debian(script, env):
    path = os.path.join(os.path.dirname(sys.executable), script)
    if not os.path.exists(path):
        pytest.skip(f"{script} is not installed in the venv (setup.py entry points)")
    args = _args_for(script)
    debian = harness.run([path, *args], env, executable=f"/usr/bin/{script}")
    assert harness.run([path, *args], env) == debian


def test_a_script_found_on_path_shows_the_name_typed(env, tmp_path):
    """Run by its bare name through $PATH, as operators do: the usage line shows
    ``xenstore-read``, as the C tool's does (argv[0] is what was typed)."""
    path = tmp_path / "xenstore-read"
    path.write_text(WRAPPER.format(python=sys.executable, func="read_main"))
    path.chmod(0o755)
    env = dict(env, PATH=f"{tmp_path}{os.pathsep}{env.get('PATH', '')}")
    debian = harness.run(["xenstore-read", "-x"], env, executable="/usr/bin/xenstore-read")
    assert debian.stderr.startswith(b"xenstore-read: invalid option -- 'x'\n")
    assert harness.run(["xenstore-read", "-x"], env) == debian
