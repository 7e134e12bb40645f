"""xenstore path rules (docs/misc/xenstore.txt, "Paths are /-separated").

Allowed characters are ASCII alphanumerics and ``-/_@``; no ``//``, no
trailing ``/`` except the root, never empty.  A path not starting with ``/``
is relative to the caller's home, ``/local/domain/<domid>``.  Names starting
with ``@`` (``@introduceDomain``) are special watch names, never nodes.
Paths are ``str`` here: every valid path is ASCII.
"""
import re

from .constants import ABS_PATH_MAX, REL_PATH_MAX
from .errors import XenstoreError

_VALID = re.compile(r"[A-Za-z0-9/_@-]*\Z")

INTRODUCE_DOMAIN = "@introduceDomain"
RELEASE_DOMAIN = "@releaseDomain"


def domain_home(domid: int) -> str:
    return f"/local/domain/{domid}"


def decode(raw: bytes) -> str:
    """Wire bytes -> str; bytes outside ASCII can never be valid (EINVAL)."""
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise XenstoreError("EINVAL", "path is not ASCII") from None


def is_special(path: str) -> bool:
    return path.startswith("@")


def canonicalize(path: str, domid: int, allow_special: bool = False) -> str:
    """Check ``path`` and make it absolute for a caller in domain ``domid``.

    Raises XenstoreError("EINVAL") for any malformed path.  Limits follow
    xs_wire.h: REL_PATH_MAX for what a client gives relative, ABS_PATH_MAX
    for the absolute result.
    """
    if not path or not _VALID.match(path):
        raise XenstoreError("EINVAL", "bad path characters or empty path")
    if path[0] == "@":
        if not allow_special or "/" in path:
            raise XenstoreError("EINVAL", "special name not allowed here")
        return path
    if path[0] == "/":
        absolute = path
    else:
        if len(path) > REL_PATH_MAX:
            raise XenstoreError("EINVAL", "relative path too long")
        absolute = f"/local/domain/{domid}/{path}"
    if len(absolute) > ABS_PATH_MAX:
        raise XenstoreError("EINVAL", "path too long")
    if "//" in absolute or (absolute[-1] == "/" and absolute != "/"):
        raise XenstoreError("EINVAL", "empty path component")
    return absolute


def parent(path: str) -> str:
    """Parent of an absolute, canonical, non-root path."""
    cut = path.rfind("/")
    return path[:cut] if cut > 0 else "/"


def basename(path: str) -> str:
    return path[path.rfind("/") + 1:]


def join(parent_path: str, name: str) -> str:
    return parent_path + name if parent_path == "/" else f"{parent_path}/{name}"


def is_child(child: str, parent_path: str) -> bool:
    """True when ``child`` is ``parent_path`` or lies below it (by component)."""
    if parent_path == "/":
        return child.startswith("/")
    return child == parent_path or child.startswith(parent_path + "/")


def relative_to(path: str, domid: int) -> str:
    """How a relative watch of domain ``domid`` sees the absolute ``path``."""
    home = f"/local/domain/{domid}/"
    return path[len(home):] if path.startswith(home) else path
