"""Run Debian's xenstore-utils and our shims side by side, and snapshot the store.

Debian's tools are always called by absolute path (our console scripts carry
the same names); ours through the entry-point functions, in a fresh
interpreter, with the same ``argv[0]`` so that usage texts can match.
"""
import os
import subprocess
import sys
from typing import NamedTuple

from tests.daemon_process import ROOT

DEBIAN_BIN = "/usr/bin"
MODES = ("chmod", "exists", "list", "ls", "read", "rm", "write", "watch")

# argv[1] names the entry point, argv[2:] is the tool's own argv (argv[0] first).
RUNNER = "import sys, watchlib.cli as cli; sys.exit(getattr(cli, sys.argv[1])(sys.argv[2:]))"


class Result(NamedTuple):
    rc: int
    stdout: bytes
    stderr: bytes


def debian_available() -> bool:
    return all(os.access(f"{DEBIAN_BIN}/xenstore-{m}", os.X_OK) for m in MODES)


def debian_command(form: str, args, argv0=None):
    """(argv, executable) for Debian's tool; ``form`` is a mode or "xenstore"."""
    binary = f"{DEBIAN_BIN}/xenstore" if form == "xenstore" else f"{DEBIAN_BIN}/xenstore-{form}"
    return [argv0 or binary, *args], binary


def ours_command(form: str, args, argv0=None):
    """argv for our shim: ``read_main`` etc. for a mode, ``main`` for "xenstore"."""
    func = "main" if form == "xenstore" else f"{form}_main"
    binary = f"{DEBIAN_BIN}/xenstore" if form == "xenstore" else f"{DEBIAN_BIN}/xenstore-{form}"
    return [sys.executable, "-c", RUNNER, func, argv0 or binary, *args]


def client_env(socket_path=None, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("XENSTORED_PATH", "XENSTORED_RUNDIR", "POSIXLY_CORRECT", "COLUMNS")}
    env["PYTHONPATH"] = ROOT
    # The shims never match globs; keep watchlib from loading xsd's C
    # matcher (which warns on stderr when its build is stale).
    env["WATCHLIB_MATCHER"] = "python"
    env["LC_ALL"] = "C"
    if socket_path is not None:
        env["XENSTORED_PATH"] = socket_path
    env.update(extra)
    return env


def run(argv, env, executable=None, timeout=60) -> Result:
    proc = subprocess.run(argv, executable=executable, env=env, cwd=ROOT,
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def run_debian(form, args, env, argv0=None) -> Result:
    argv, binary = debian_command(form, args, argv0)
    return run(argv, env, executable=binary)


def run_ours(form, args, env, argv0=None) -> Result:
    return run(ours_command(form, args, argv0), env)


def start(argv, env, executable=None) -> subprocess.Popen:
    return subprocess.Popen(argv, executable=executable, env=env, cwd=ROOT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


# -- the store, as a comparable snapshot ---------------------------------------------

def snapshot(client, path="/") -> dict:
    """{path: (value, perms)} for ``path`` and everything below it."""
    out = {}
    stack = [path]
    while stack:
        p = stack.pop()
        out[p] = (client.read(p), tuple(f"{q.kind}{q.domid}" for q in client.get_perms(p)))
        base = "" if p == "/" else p
        stack.extend(f"{base}/{name}" for name in client.ls(p))
    return out


def restore(client, baseline: dict, current: dict) -> None:
    """Make the store equal ``baseline`` again, touching only what differs."""
    from watchlib import Perm
    gone = [p for p in current if p not in baseline]
    for p in sorted(gone, key=len):
        if any(p.startswith(q + "/") for q in gone if q != p):
            continue
        client.rm(p)
    for p, (value, perms) in sorted(baseline.items(), key=lambda kv: len(kv[0])):
        now = current.get(p)
        if now is None or now[0] != value:
            client.write(p, value)
        if now is None or now[1] != perms:
            client.set_perms(p, [Perm(s[0], int(s[1:])) for s in perms])


def _parent(path: str) -> str:
    cut = path.rfind("/")
    return path[:cut] if cut > 0 else "/"


def _under(path: str, root: str) -> bool:
    return path == root or root == "/" or path.startswith(root + "/")


class StoreTracker:
    """Which parts of the store changed, learnt from a watch on ``/``.

    Snapshotting the whole corpus tree around every mutating case is slow;
    the watch says which subtrees to look at.  A change event names the
    node written, removed or re-permissioned (a write that creates parents
    names only the leaf, so a region starts at the highest new ancestor).
    The module fixture checks at the end that the store is back to the
    baseline as a whole, which also catches a change the watch missed.
    """

    def __init__(self, client, baseline: dict):
        import threading
        from watchlib import Event
        self.client = client
        self.baseline = baseline
        self._event_type = Event
        self._lock = threading.Lock()
        self._paths = set()
        self.lost = False
        self._sub = client.watch("/", self._on_item, initial=False)

    def _on_item(self, item) -> None:
        with self._lock:
            if isinstance(item, self._event_type):
                self._paths.add(item.path)
            else:                       # LostEvents or Resync: we cannot know
                self.lost = True

    def changes(self) -> list:
        """Roots of the subtrees changed since the last call."""
        self.client.sync()
        with self._lock:
            paths, self._paths = self._paths, set()
            if self.lost:
                self.lost = False
                return ["/"]
        roots = set()
        for path in paths:
            root = path
            while root != "/" and _parent(root) not in self.baseline:
                root = _parent(root)
            roots.add(root)
        return sorted(r for r in roots if not any(o != r and _under(r, o) for o in roots))

    def state(self, roots) -> dict:
        """The whole store's {path: (value, perms)}, reading only below ``roots``."""
        full = {p: v for p, v in self.baseline.items()
                if not any(_under(p, r) for r in roots)}
        for root in roots:
            try:
                full.update(snapshot(self.client, root))
            except Exception as e:      # the region is gone (ENOENT)
                if getattr(e, "name", None) != "ENOENT":
                    raise
        return full

    def restore(self, roots, state: dict) -> None:
        base = {p: v for p, v in self.baseline.items() if any(_under(p, r) for r in roots)}
        now = {p: v for p, v in state.items() if any(_under(p, r) for r in roots)}
        restore(self.client, base, now)
        self.changes()                  # our own repairs are not news
