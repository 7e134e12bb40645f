"""xenstore-read, -write, -watch, -ls, -rm, -list, -exists, -chmod, -control and ``xenstore``.

Drop-in replacements for Debian's xenstore-utils (Xen 4.17), built on
watchlib: same options, output, exit codes and error messages, so a script
written for the Xen tools runs unchanged against any xenstored; plus
``--json`` (read, list, ls, watch) and ``xenstore-watch --value``.
See docs/cli.md.

Entry points (console scripts):

    xenstore          = watchlib.cli:main          mode from argv[0] or argv[1]
    xenstore-read     = watchlib.cli:read_main     ... and so on for each mode
    xenstore-control  = watchlib.cli:control_main  (control.py)

``python -m watchlib.cli <mode> [args]`` is the multi-call form.
"""
import os
import shutil
import sys

from .tools import MODES, Tool

__all__ = ["MODES", "main", "control_main", "chmod_main", "exists_main", "list_main", "ls_main", "read_main",
           "rm_main", "watch_main", "write_main"]


def _script_argv():
    """``sys.argv`` with ``argv[0]`` as the user most likely typed it.

    A console script is run by the kernel as ``python /path/to/xenstore-read``,
    so Python sees the full path even when the user typed ``xenstore-read``,
    and the usage text (which shows argv[0]) would differ from the C tool's.
    When the name alone finds this very script on $PATH, show the name alone.
    """
    argv = list(sys.argv)
    if argv and os.sep in argv[0]:
        name = os.path.basename(argv[0])
        found = shutil.which(name)
        try:
            if found and os.path.samefile(found, argv[0]):
                argv[0] = name
        except OSError:
            pass
    return argv


def version_text(prog: str) -> str:
    """What ``--version`` prints: the installed xsd package's version (watchlib needs no xsd)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        number = version("xsd")
    except PackageNotFoundError:
        number = "unknown"
    return f"{prog} (xsd) {number}"


def version_requested(argv) -> bool:
    """``--version`` among the options (before ``--``): print it (a flag the Xen tools
    lack, so no script of theirs passes it) and say so."""
    for arg in argv[1:]:
        if arg == "--":
            return False
        if arg == "--version":
            print(version_text(os.path.basename(argv[0])))
            return True
    return False


def main(argv=None) -> int:
    """As the C ``xenstore`` binary: the mode comes from the program name
    (``xenstore-read``) or, for any other name, from the first argument."""
    argv = _script_argv() if argv is None else argv
    if version_requested(argv):
        return 0
    return Tool(argv).run()


def _mode_main(mode: str, argv=None) -> int:
    argv = _script_argv() if argv is None else argv
    if version_requested(argv):
        return 0
    return Tool(argv, mode=mode).run()


def control_main(argv=None) -> int:
    from .control import main as control
    return control(argv)


def read_main(argv=None) -> int:
    return _mode_main("read", argv)


def write_main(argv=None) -> int:
    return _mode_main("write", argv)


def watch_main(argv=None) -> int:
    return _mode_main("watch", argv)


def ls_main(argv=None) -> int:
    return _mode_main("ls", argv)


def rm_main(argv=None) -> int:
    return _mode_main("rm", argv)


def list_main(argv=None) -> int:
    return _mode_main("list", argv)


def exists_main(argv=None) -> int:
    return _mode_main("exists", argv)


def chmod_main(argv=None) -> int:
    return _mode_main("chmod", argv)
