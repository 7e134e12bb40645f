"""What must hold before the daemon serves, each failure one clear sentence.

A run or state directory the daemon cannot create or write, a socket path
that another daemon answers on, a socket path that is not a socket: the
daemon says which and exits, before it opens its journal or touches a socket
file (issue 14: never take another daemon's sockets).
"""
import errno
import os
import socket
import stat


class StartupError(Exception):
    """A start-up condition the operator must fix; the message names it."""


def _usable_dir(path: str, what: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise StartupError(f"cannot create {what} {path}: {err.strerror}") from None
    if not os.path.isdir(path):
        raise StartupError(f"{what} {path} is not a directory")
    probe = os.path.join(path, f".xsd-probe-{os.getpid()}")
    try:                                  # a real write: os.access says yes to root on a
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)   # read-only mount
    except OSError as err:
        raise StartupError(f"cannot write in {what} {path}: {err.strerror}") from None
    os.close(fd)
    os.unlink(probe)


def socket_answers(path: str) -> bool:
    """True when a process accepts connections on the Unix socket ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            return False          # a stale socket file, or none
        except OSError as err:
            if err.errno in (errno.ECONNREFUSED, errno.ENOENT):
                return False
            raise StartupError(f"cannot probe socket {path}: {err.strerror}") from None
        return True


def check_socket_path(path: str) -> None:
    """Refuse ``path`` when it is taken: by a daemon that answers, or by a non-socket."""
    if len(os.fsencode(path)) >= 108:      # sizeof(sockaddr_un.sun_path) on Linux
        raise StartupError(f"socket path {path} is too long for a Unix socket (107 bytes at most)")
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise StartupError(f"{path} exists and is not a socket; not replacing it")
    if socket_answers(path):
        raise StartupError(f"another xenstore daemon answers on {path}; not starting "
                           "(stop it first, or use another --rundir)")


def check(config) -> None:
    """Everything that can be checked before the daemon is built."""
    _usable_dir(config.rundir, "run directory")
    if config.state_dir:
        _usable_dir(config.state_dir, "state directory")
    if not config.live_restore:               # a live update inherits its sockets
        for path in (config.socket_path, config.ro_socket_path):
            check_socket_path(path)
    for path, what in ((config.pid_file, "pid file"), (config.trace_file, "trace file")):
        if path:
            existed = os.path.exists(path)
            try:
                with open(path, "a", encoding="utf-8"):
                    pass
            except OSError as err:
                raise StartupError(f"cannot write {what} {path}: {err.strerror}") from None
            if not existed:
                os.unlink(path)
