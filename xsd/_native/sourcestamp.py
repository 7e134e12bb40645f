"""The build stamp: a digest of the files whose content defines the C extension.

Standard library only, so that build_native.py (run by setuptools before the
package can be imported) loads this file by path, and trie.py imports it:
one definition for the stamp compiled in and the stamp checked at import.
"""
import hashlib
import os

HERE = os.path.dirname(os.path.abspath(__file__))

# The extension's C modules, each <name>.c and <name>.h: build_native.py compiles them in
# this order and declares each to cffi by its .cdef (the trie's is native.cdef).
C_MODULES = ("trie", "store", "txn", "engine", "journal_enc", "watchreg", "poller")
CDEF_FILES = ("native.cdef",) + tuple(name + ".cdef" for name in C_MODULES[1:])

# An explicit list, not a glob: cffi writes its generated _xsd_native.c next
# to them on in-place builds.
STAMP_FILES = (("alloc.h", "delivery.h", "hash.h", "perms.h") + CDEF_FILES
               + tuple(name + ext for name in C_MODULES for ext in (".c", ".h")))


def source_stamp(directory=HERE):
    """Hex digest over STAMP_FILES in ``directory`` (name and bytes of each)."""
    h = hashlib.sha256()
    for name in STAMP_FILES:
        with open(os.path.join(directory, name), "rb") as f:
            data = f.read()
        h.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return h.hexdigest()[:32]
