"""Where xenstored's sockets are: one rule, libxenstore's, for every tool here.

libxenstore (tools/libs/store/xs.c, Xen 4.17: ``xs_daemon_rundir``,
``xs_daemon_socket``) and the Xen daemons agree on:

- the run directory is ``$XENSTORED_RUNDIR`` when set, else /var/run/xenstored
  (``XEN_RUN_STORED``);
- the socket is ``$XENSTORED_PATH`` when set, else ``<run directory>/socket``;
- the read-only socket is the socket's path plus ``_ro`` (``socket_ro``, as
  older libxenstore put it; Xen 4.17's ``xs_daemon_socket_ro`` returns the
  socket itself, its daemons having no read-only socket any more).  xsd and
  the anchors' daemons still make one beside the socket, so it is used when it
  exists, and the socket itself when only that exists.

An environment variable counts as set when it is present, even empty, as
``getenv`` returns it in C.  Used by watchlib's clients and CLI shims and by
xsd (the daemon's own sockets, ``xsd-hv``).
"""
import os

DEFAULT_RUNDIR = "/var/run/xenstored"
SOCKET_NAME = "socket"
RO_SOCKET_NAME = "socket_ro"
RO_SUFFIX = "_ro"


def rundir(environ=None) -> str:
    """``xs_daemon_rundir()``: ``$XENSTORED_RUNDIR``, else /var/run/xenstored."""
    env = os.environ if environ is None else environ
    value = env.get("XENSTORED_RUNDIR")
    return DEFAULT_RUNDIR if value is None else value


def daemon_socket(environ=None, run_dir=None) -> str:
    """``xs_daemon_socket()``: ``$XENSTORED_PATH``, else ``<rundir>/socket``.

    ``run_dir``: a run directory chosen otherwise (a ``--rundir`` option),
    in place of ``$XENSTORED_RUNDIR``'s.
    """
    env = os.environ if environ is None else environ
    value = env.get("XENSTORED_PATH")
    if value is not None:
        return value
    # "%s/socket" as xs.c formats it (an empty run directory gives "/socket").
    return f"{rundir(env) if run_dir is None else run_dir}/{SOCKET_NAME}"


def daemon_socket_ro(environ=None) -> str:
    """The read-only socket: ``daemon_socket() + "_ro"``; the socket itself when only it exists."""
    path = daemon_socket(environ)
    ro = path + RO_SUFFIX
    if not os.path.exists(ro) and os.path.exists(path):
        return path
    return ro


def client_socket(path=None, read_only=False) -> str:
    """The socket a watchlib client opens: ``path`` when given, else the rule above."""
    if path:
        return str(path)
    return daemon_socket_ro() if read_only else daemon_socket()
