"""Watch matching for xsd: a trie over path components, in C when built.

    from xsd._native import (WatchTrie, GlobSet, glob_match, BACKEND,
                             MATCH_ANCESTORS, MATCH_DESCENDANTS)

    t = WatchTrie()
    t.add("/local/domain/1/name", 7)
    t.match("/local/domain/1/name", MATCH_ANCESTORS)   # -> [7]
    t.match("/local", MATCH_DESCENDANTS)               # -> [7]

The rules (paths, special "@names", globs) are written once, in trie.h. In
short, for both backends:

- t.add(path, id): ValueError if that (path, id) is already registered, or
  if path is not a valid key ("/..." without empty components, or "@name");
  ids are unsigned 64-bit (OverflowError outside).
- t.remove(path, id) -> bool: False if (path, id) was not registered.
- t.match(path, flags) -> list of ids, each once, sorted ascending (callers
  should not rely on the order). MATCH_ANCESTORS: ids at path and every
  ancestor up to "/"; MATCH_DESCENDANTS: ids strictly below path; OR-ed: both.
  "@names" are their own namespace: "/" does not cover them.
- GlobSet: add(pattern, id) / remove / match(path) -> ids of the patterns
  matching path, one C call; glob_match(pattern, path) -> bool. "*" is one
  component, "**" any number including none.
- Not thread-safe: one object, one thread at a time (the event loop).

The backend is chosen at import by the environment variable XSD_NATIVE:

    auto    (default) the cffi extension if it imports and its build stamp
            matches the C sources beside it; otherwise the pygtrie fallback,
            with a warning logged and the reason kept in FALLBACK_REASON.
    c       the cffi extension, or ImportError at import saying why not.
    python  the pygtrie fallback (xsd._native.pytrie).

BACKEND is "cffi" or "python"; BACKEND_INFO is a one-line description for the
daemon's start-up log.
"""
import logging
import os

from .pytrie import MATCH_ANCESTORS, MATCH_DESCENDANTS

__all__ = ["WatchTrie", "GlobSet", "glob_match", "BACKEND", "BACKEND_INFO",
           "FALLBACK_REASON", "MATCH_ANCESTORS", "MATCH_DESCENDANTS"]

_log = logging.getLogger(__name__)

_CHOICES = ("auto", "c", "python")
_choice = os.environ.get("XSD_NATIVE", "").strip().lower() or "auto"
if _choice not in _CHOICES:
    raise ImportError("XSD_NATIVE=%r: expected one of %s"
                      % (os.environ.get("XSD_NATIVE"), ", ".join(_CHOICES)))

FALLBACK_REASON = None

if _choice == "python":
    from .pytrie import GlobSet, WatchTrie, glob_match
    BACKEND = "python"
    BACKEND_INFO = "python (pygtrie; XSD_NATIVE=python)"
else:
    try:
        from .trie import EXTENSION, STAMP, GlobSet, WatchTrie, glob_match
    except ImportError as e:
        if _choice == "c":
            raise ImportError(
                "XSD_NATIVE=c but the C extension cannot be used: %s" % (e,)
            ) from e
        FALLBACK_REASON = "%s: %s" % (type(e).__name__, e)
        _log.warning("xsd._native: C extension not used, falling back to "
                     "pygtrie (slower watch matching): %s", FALLBACK_REASON)
        from .pytrie import GlobSet, WatchTrie, glob_match
        BACKEND = "python"
        BACKEND_INFO = "python (pygtrie; fallback: %s)" % FALLBACK_REASON
    else:
        BACKEND = "cffi"
        BACKEND_INFO = "cffi (stamp %s, %s)" % (STAMP, EXTENSION)
