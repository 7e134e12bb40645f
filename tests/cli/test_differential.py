"""Each shim against Debian's xenstore-utils on the same xsd: stdout, stderr and exit
status must be identical, and so must the store afterwards.

Every case runs Debian's tool first, then ours, with the same argv (argv[0]
included) and environment.  A case that may change the store (write, rm,
chmod) is run by each tool on the same starting tree: the tree left by
Debian's tool is snapshotted, the baseline restored, ours run, snapshotted and
the baseline restored again.
"""
import fcntl
import os
import pty
import socket
import struct
import subprocess
import termios

import pytest

from tests.cli import harness

MUTATING = ("write", "rm", "chmod")
LONG_PATH = "/" + "a" * 5000            # over the 4096-byte payload: E2BIG, never sent
BIG_VALUE = "v" * 4000
TOO_BIG_VALUE = "v" * 4100


class Case:
    def __init__(self, form, *args, env="rw", argv0=None, name=None):
        self.form = form
        self.args = list(args)
        self.env = env
        self.argv0 = argv0
        self.name = name

    @property
    def mode(self):
        if self.form != "xenstore":
            return self.form
        return self.args[0] if self.args else None

    @property
    def id(self):
        if self.name:
            return self.name
        text = " ".join(a if len(a) <= 24 else a[:20] + f"...{len(a)}" for a in self.args)
        extra = "" if self.env == "rw" else f" [{self.env}]"
        extra += f" argv0={self.argv0}" if self.argv0 else ""
        if len(text) > 80:
            text = f"{text[:60]}... ({len(self.args)} args)"
        return f"{self.form} {text}{extra}".replace("\n", "\\n")


def cases_for(form, *arg_lists, **kw):
    return [Case(form, *args, **kw) for args in arg_lists]


# -- the corpus -------------------------------------------------------------------------

READ = cases_for(
    "read",
    ["/t/a"], ["/t/bin"], ["-R", "/t/bin"], ["-p", "/t/a", "/t/bin"], ["-pR", "/t/a", "/t/empty"],
    ["/t/a", "/t/missing", "/t/bin"], ["/t/missing"], ["rel"], ["/t/utf8"], ["/t"], ["/t/big"],
    ["@introduceDomain"], ["/t/a/"], ["//t"], ["/t/a.b"], [""], [LONG_PATH],
    ["--raw", "--prefix", "/t/a"], ["--pre", "/t/a"], ["/t/a", "-p"], ["--", "-p"], ["-"],
    ["-s", "/t/a"], ["-h"], ["--help"], ["--he", "/t/a"], [], ["-f", "/t/a"], ["-t", "/t/a"],
    ["-x", "/t/a"], ["-xyp", "/t/a"], ["--bogus=1", "/t/a"], ["--r", "/t/a"], ["--=x", "/t/a"],
    ["---x", "/t/a"], ["-:", "/t/a"], ["--help=1", "/t/a"], ["--socket", "/t/a"],
    ["-n", "3", "/t/a"], ["--number"], ["--number=", "/t/a"], ["-pn"], ["--json=1", "/t/a"],
    ["--value", "/t/a"],
) + [
    Case("read", "/t/a", "-p", env="posix"),
    Case("read", "/t/a", "/t/bin", env="ro"),
    Case("read", "-p", "/t/a", env="rundir"),
    Case("read", "/t/a", env="nosock"),
    Case("read", env="nosock"),
    Case("read", "/t/a", env="refused"),
    Case("read", argv0="xenstore-read"),
    Case("read", "-x", "/t/a", argv0="./xenstore-read"),
]

LS = cases_for(
    "ls",
    [], ["/t"], ["-p", "/t"], ["-f", "/t"], ["-fp", "/t"], ["--flat", "--prefix", "/t/deep"],
    ["/t/big"], ["-p", "/t/big"], ["-f", "/t/big"], ["/t/missing"], ["/t/a"], ["/t/"], ["/t/chain"],
    ["-p", "/t/chain"], ["/t/deep", "/local"], ["reldir"], ["/local/domain/0"], ["-R"], ["-n1"],
    ["-h"], ["-t", "/t"], ["@introduceDomain"], [LONG_PATH], ["/"], ["-s", "/t/deep"], ["--js", "/t"],
) + [
    Case("ls", "-p", "/t", env="ro"),
    Case("ls", env="nosock"),
    Case("ls", "/t/deep", env="refused"),
    Case("ls", "/t/deep", "-f", env="posix"),
    Case("ls", "/t", env="columns"),
]

LIST = cases_for(
    "list",
    ["/t"], ["-p", "/t"], ["/t", "/t/deep"], ["/t/big"], ["-p", "/t/big"], ["/t/missing"],
    ["/t", "/t/missing", "/t/deep"], ["/t/a"], ["reldir"], ["-p", "reldir"], [], ["-R", "/t"],
    ["-h"], ["/t/"], [LONG_PATH], ["--prefix", "/t/deep"],
) + [Case("list", "/t/deep", env="ro"), Case("list", "/t", env="nosock")]

EXISTS = cases_for(
    "exists",
    ["/t/a"], ["/t/missing"], ["/t/a", "/t/missing"], ["/t/a", "/t/big", "rel"], ["-p", "/t/a"],
    [], ["-h"], ["@introduceDomain"], ["/t/a/"], [LONG_PATH], ["-R", "/t/a"],
) + [Case("exists", "/t/a", env="ro"), Case("exists", "/t/a", env="nosock")]

# Watches that end by themselves (-n) on initial events alone; see
# test_watch_events for events caused by writes.
WATCH = cases_for(
    "watch",
    ["-n", "1", "/t/w"], ["-n1", "/t/a", "/t/bin"], ["-n", "2", "/t/a", "@introduceDomain"],
    ["-n", "2", "/t/a", "/t/missing"], ["-n", "0", "/t/a"], ["-n", "abc", "/t/a"],
    ["-n", "-5", "/t/a"], ["--number=1", "rel"], ["--num", "1", "/"], ["-n1", "/t/a/"],
    ["-n1", "/t/a", "/t/a"], ["-n1", LONG_PATH], [], ["-n"], ["-h"], ["-p", "/t/a"],
    ["-n1x", "/t/a"], ["/t/a", "-n", "1"], ["-n", "1", "-x", "/t/a"],
) + [
    Case("watch", "-n", "1", "/t/a", env="ro"),
    Case("watch", "-n", "1", "/t/a", env="nosock"),
]

WRITE = cases_for(
    "write",
    ["/t/new", "v"], ["/t/a", "changed"], ["/t/x", "1", "/t/y", "2"], ["/t/x", "1", "/t/a/", "2"],
    ["/t/x"], [], ["-h"], ["-p", "/t/x", "1"], ["-t", "/t/x", "1"],
    ["/t/e1", r"a\tb\001c\x7f\\d\n\r"], ["/t/e2", r"\x41\x4g\x\xZ\x"], ["/t/e3", r"\0\08\777\1234"],
    ["/t/e4", "trailing\\"], ["/t/e5", r"\q\8\ \x 5\x-1\x+\x0x4\x-0\x00"], ["/t/e6", r"\x0x"],
    ["-R", "/t/raw", r"a\tb"], ["--raw", "/t/raw2", r"\x41"], ["/t/utf", "grüße"],
    ["rel2", "r"], ["/t/a", BIG_VALUE], ["/t/a", TOO_BIG_VALUE], ["@introduceDomain", "x"],
    ["/t/a", ""], ["/t/big/new", "n"], ["/t/x", "1", "/t/x", "2"], ["-R"], ["--", "/t/x", "-R"],
) + [
    Case("write", "/t/x", "1", env="ro"),
    Case("write", "/t/x", "1", "/t/y", "2", env="ro"),
    Case("write", "/t/x", "1", env="nosock"),
    Case("write", "/t/x", "-R", "1", env="posix"),
]

RM = cases_for(
    "rm",
    ["/t/a"], ["/t/missing"], ["/t/missing/deeper"], ["/t/deep"], ["/t/a", "/t/empty"],
    ["/t/a", "/t/missing/x", "/t/empty"], ["-t", "/t/tidy/a/b/c"], ["-t", "/t/valued/child"],
    ["--tidy", "rel"], ["-t", "/t/tidy2/only"], ["-t", "reldir/x"], ["/"], ["-w", "/t/a"],
    ["-p", "/t/a"], [], ["-h"], ["/t/big"], ["-t", "/t/missing/x"], ["/t/a/"], ["-st", "/t/a"],
) + [
    Case("rm", "/t/a", env="ro"),
    Case("rm", "-t", "/t/tidy/a/b/c", env="ro"),
    Case("rm", "/t/a", env="nosock"),
]

def _escape_soup(count=40, seed=6):
    """key/value pairs whose values are random runs of escape fragments."""
    import random
    rng = random.Random(seed)
    parts = ["\\", "x", "X", "0", "1", "7", "8", "f", "F", "g", " ", "-", "+", "t", "n", "r", "a"]
    args = []
    for i in range(count):
        args += [f"/t/soup{i}", "".join(rng.choice(parts) for _ in range(rng.randint(1, 12)))]
    return args


WRITE.append(Case("write", *_escape_soup(), name="write 40 random escape soups"))

CHMOD = cases_for(
    "chmod",
    ["/t/a", "n0"], ["/t/a", "r0"], ["/t/a", "b0", "r5", "w7"], ["/t/a", "n5"], ["/t/a", "x0"],
    ["/t/a", ""], ["/t/a"], ["-r", "/t/deep", "r0"], ["-u", "/t/deep/e/f", "b0"],
    ["-ur", "/t/deep/e", "n0", "r3"], ["-u", "rel", "n0"], ["-u", "reldir/x", "n0"],
    ["/t/missing", "n0"], ["-r", "/t/chain", "n0"], ["/t/a", "r-1"], ["/t/a", "n0", "r99999999999"],
    ["/t/a", "n0", "r 5x"], ["/t/a", "n0", "rabc"], ["/t/a", "n0", "r0x10"], ["-p", "/t/a", "n0"],
    [], ["-h"], ["-R", "/t/a", "n0"], ["-r", "/", "n0"], ["--recurse", "--upto", "/t/deep/e", "b0"],
    ["/t/perm", "n0", "r5", "w7", "b9", "n11"], ["-r", "/t/big", "n0", "r1"], ["/t/a", "q0", "x1"],
    ["/t/a", "n0", "-r"], ["/t/a", "n0", *["r1"] * 1500],
) + [
    Case("chmod", "/t/a", "n0", env="ro"),
    Case("chmod", "/t/a", "x0", env="nosock"),
]

XENSTORE = cases_for(
    "xenstore",
    ["read", "/t/a"], ["ls", "/t/deep"], ["read", "-x", "/t/a"], ["read"], ["ls", "-h"], ["chmod"],
    ["exists", "-h"], ["list", "-h"], ["write", "-h"], ["rm", "-h"], ["watch", "-h"], ["read", "-h"],
    [], ["bogus"], ["xenstore-read"], ["-h"], ["read", "--bogus", "/t/a"], ["list", "-p", "/t/deep"],
    ["exists", "/t/missing"], ["write", "/t/x", "1", "/t/y"], ["write", "/t/m1", "1", "/t/m2", "2"],
    ["rm", "-t", "/t/tidy/a/b/c"], ["chmod", "-u", "/t/deep/e", "r0"], ["watch", "-n1", "/t/a"],
) + [
    Case("xenstore", argv0="xenstore"),
    Case("xenstore", "read", argv0="xenstore"),
    Case("xenstore", "read", "/t/a", argv0="xenstore-read", name="xenstore named xenstore-read"),
    Case("xenstore", "/t/a", argv0="/opt/bin/xenstore-read", name="multi-call named xenstore-read"),
    Case("xenstore", "/t/a", argv0="xenstore-bogus", name="multi-call named xenstore-bogus"),
    Case("xenstore", "read", "/t/a", env="nosock"),
]

CORPUS = READ + LS + LIST + EXISTS + WATCH + WRITE + RM + CHMOD + XENSTORE


# -- running a case ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def envs(cli_daemon, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli-envs")
    refused = str(tmp / "refused")
    with socket.socket(socket.AF_UNIX) as s:      # bound, never listening
        s.bind(refused)
    rundir = os.path.dirname(cli_daemon.socket_path)
    return {
        "rw": harness.client_env(cli_daemon.socket_path),
        "ro": harness.client_env(cli_daemon.ro_socket_path),
        "posix": harness.client_env(cli_daemon.socket_path, POSIXLY_CORRECT="1"),
        "nosock": harness.client_env(str(tmp / "missing" / "socket")),
        "refused": harness.client_env(refused),
        "rundir": harness.client_env(None, XENSTORED_RUNDIR=rundir),
        "columns": harness.client_env(cli_daemon.socket_path, COLUMNS="40"),
    }


def _differences(theirs, ours) -> str:
    out = []
    for field in ("rc", "stdout", "stderr"):
        a, b = getattr(theirs, field), getattr(ours, field)
        if a != b:
            out.append(f"{field}:\n  debian: {a!r}\n  ours:   {b!r}")
    return "\n".join(out)


def _state_differences(before, after) -> str:
    keys = sorted(set(before) | set(after))
    return "\n".join(f"  {k}: debian {before.get(k)!r} ours {after.get(k)!r}"
                     for k in keys if before.get(k) != after.get(k))


@pytest.fixture(scope="module")
def read_only_results(envs):
    """Cases that cannot change the store, run up front a few at a time (the
    run is dominated by interpreter start-up, so this halves its length)."""
    from concurrent.futures import ThreadPoolExecutor

    def both(case):
        env = envs[case.env]
        return (harness.run_debian(case.form, case.args, env, case.argv0),
                harness.run_ours(case.form, case.args, env, case.argv0))

    cases = [c for c in CORPUS if c.mode not in MUTATING]
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(map(id, cases), pool.map(both, cases)))


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.id)
def test_same_as_xenstore_utils(case, cli_daemon, envs, read_only_results):
    env = envs[case.env]
    tracker = cli_daemon.tracker
    mutating = case.mode in MUTATING
    if not mutating:
        theirs, ours = read_only_results[id(case)]
        diff = _differences(theirs, ours)
        assert not diff, f"{case.id}:\n{diff}"
        return
    theirs = harness.run_debian(case.form, case.args, env, case.argv0)
    if mutating:
        roots_theirs = tracker.changes()
        after_theirs = tracker.state(roots_theirs)
        tracker.restore(roots_theirs, after_theirs)
    ours = harness.run_ours(case.form, case.args, env, case.argv0)
    if mutating:
        roots_ours = tracker.changes()
        after_ours = tracker.state(roots_ours)
        tracker.restore(roots_ours, after_ours)
    diff = _differences(theirs, ours)
    assert not diff, f"{case.id}:\n{diff}"
    if mutating:
        state = _state_differences(after_theirs, after_ours)
        assert not state, f"{case.id}: the store differs afterwards:\n{state}"


def test_corpus_covers_every_flag():
    """Every option letter and long name of xenstore-utils appears in the corpus."""
    words = " ".join(" ".join(c.args) for c in CORPUS)
    for flag in ("-h", "-f", "-p", "-s", "-t", "-u", "-r", "-n", "-R", "--help", "--flat",
                 "--prefix", "--tidy", "--upto", "--recurse", "--number", "--raw"):
        assert flag in words, flag
    assert {c.mode for c in CORPUS} >= set(harness.MODES)


# -- watches with events caused by writes --------------------------------------------

def _start_pair(form, args, env):
    argv, binary = harness.debian_command(form, args)
    theirs = harness.start(argv, env, executable=binary)
    ours = harness.start(harness.ours_command(form, args), env)
    return theirs, ours


def _finish(proc, timeout=20):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        err += b"\n[killed: did not exit]"
    return harness.Result(proc.returncode, out, err)


WATCH_SCENARIOS = [
    # (watched keys, number of events to wait for, what the writer does)
    (["/t/w"], 7, [("write", "/t/w", b"1"), ("write", "/t/w/sub", b"\x01bin"),
                   ("chmod", "/t/w", ["n0", "r3"]), ("write", "/t/other", b"x"),
                   ("rm", "/t/w/sub", None), ("rm", "/t/w", None), ("write", "/t/w", b"back")]),
    (["/t/w", "/t/deep"], 5, [("write", "/t/deep/e", b"2"), ("write", "/t/w", b"3"),
                              ("rm", "/t/deep", None), ("write", "/t/wx", b"not a match")]),
    (["rel", "/local/domain/0/reldir"], 5, [("write", "/local/domain/0/rel", b"abs"),
                                            ("write", "rel", b"relative"),
                                            ("rm", "/local/domain/0/reldir/x", None)]),
    (["/"], 3, [("write", "/t/a", b"1"), ("rm", "/t/empty", None)]),
]


@pytest.mark.parametrize("keys,count,actions", WATCH_SCENARIOS,
                         ids=[" ".join(s[0]) for s in WATCH_SCENARIOS])
def test_watch_events(keys, count, actions, cli_daemon, envs):
    client = cli_daemon.client
    from watchlib import Perm
    theirs, ours = _start_pair("watch", ["-n", str(count), *keys], envs["rw"])
    try:
        # Each prints one initial event per key once its watches are in place.
        for proc in (theirs, ours):
            for _ in keys:
                assert proc.stdout.readline(), proc.stderr.read()
        for action, path, arg in actions:
            if action == "write":
                client.write(path, arg)
            elif action == "rm":
                client.rm(path)
            else:
                client.set_perms(path, [Perm(p[0], int(p[1:])) for p in arg])
        a, b = _finish(theirs), _finish(ours)
    finally:
        for proc in (theirs, ours):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        roots = cli_daemon.tracker.changes()
        cli_daemon.tracker.restore(roots, cli_daemon.tracker.state(roots))
    diff = _differences(a, b)
    assert not diff, diff
    assert a.rc == 0 and b"killed" not in a.stderr


# -- xenstore-ls on a terminal: the width comes from the tty (COLUMNS is ignored) ---------

def _run_on_tty(argv, env, executable, columns):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen(argv, executable=executable, env=env, cwd=harness.ROOT,
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    out = bytearray()
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:             # EIO: the tool exited and closed the tty
            break
        if not chunk:
            break
        out += chunk
    err = proc.stderr.read()
    proc.stderr.close()
    rc = proc.wait()
    os.close(master)
    return harness.Result(rc, bytes(out), err)


@pytest.mark.parametrize("columns,args", [
    (50, ["/t"]), (50, ["-p", "/t"]), (50, ["-f", "/t"]), (50, ["-fp", "/t/deep"]),
    (1, ["/t/deep"]), (9, ["/t"]), (200, ["-p", "/t/deep"]),
], ids=lambda v: str(v))
def test_ls_on_a_terminal(columns, args, cli_daemon, envs):
    env = dict(envs["columns"])
    argv, binary = harness.debian_command("ls", args)
    theirs = _run_on_tty(argv, env, binary, columns)
    ours = _run_on_tty(harness.ours_command("ls", args), env, None, columns)
    diff = _differences(theirs, ours)
    assert not diff, diff


def test_a_closed_stdout_kills_with_sigpipe(cli_daemon, envs):
    """Writing to a pipe nobody reads: the C tool dies of SIGPIPE, silently."""
    results = []
    for argv, binary in (harness.debian_command("read", ["/t/a"]),
                         (harness.ours_command("read", ["/t/a"]), None)):
        r, w = os.pipe()
        os.close(r)
        try:
            proc = subprocess.run(argv, executable=binary, env=envs["rw"], cwd=harness.ROOT,
                                  stdin=subprocess.DEVNULL, stdout=w, stderr=subprocess.PIPE)
        finally:
            os.close(w)
        results.append((proc.returncode, proc.stderr))
    assert results[0] == results[1] == (-13, b"")


@pytest.mark.parametrize("form,args", [
    ("ls", ["/t/deep", "/t/missing"]), ("read", ["/t/a", "/t/missing"]),
    ("list", ["/t/deep", "/t/missing"]), ("read", ["-x", "/t/a"]),
], ids=lambda v: str(v))
def test_stdout_and_stderr_into_one_file(form, args, cli_daemon, envs):
    """stdout is buffered until exit (not a terminal), stderr is not: the same
    interleaving as the C tool when both go to one file."""
    results = []
    for argv, binary in (harness.debian_command(form, args),
                         (harness.ours_command(form, args), None)):
        proc = subprocess.run(argv, executable=binary, env=envs["rw"], cwd=harness.ROOT,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
        results.append((proc.returncode, proc.stdout))
    assert results[0] == results[1]


OPTION_WORDS = [
    "-h", "-f", "-p", "-s", "-t", "-u", "-r", "-n", "-n3", "-R", "-x", "-pR", "-nR", "-sp", "-:",
    "-W", "--help", "--fl", "--pre", "--prefix=1", "--r", "--ra", "--rec", "--number",
    "--number=2", "--nu", "--t", "--u", "--js", "--val", "--", "-", "--=", "--bogus",
    "--flat=", "key", "/a", "n0", "3",
]


def _random_vectors(count=48, seed=6):
    import random
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        form = rng.choice(harness.MODES + ("xenstore",))
        args = [rng.choice(OPTION_WORDS) for _ in range(rng.randint(0, 5))]
        if form == "xenstore":
            args.insert(0, rng.choice(harness.MODES))
        out.append((form, args, rng.random() < 0.25))
    return out


def test_random_option_vectors(envs):
    """Seeded random mixes of options and operands, parsed by both (no daemon is
    reachable, so nothing runs past xs_open).  Our --json/--value are left out:
    test_extras covers them."""
    from concurrent.futures import ThreadPoolExecutor

    def both(vector):
        form, args, posix = vector
        env = dict(envs["nosock"], **({"POSIXLY_CORRECT": "1"} if posix else {}))
        return vector, harness.run_debian(form, args, env), harness.run_ours(form, args, env)

    with ThreadPoolExecutor(max_workers=4) as pool:
        failures = [f"{v}:\n{_differences(a, b)}" for v, a, b in pool.map(both, _random_vectors())
                    if a != b]
    assert not failures, "\n".join(failures)
