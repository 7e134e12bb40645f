"""The build stamp: a digest of the files whose content defines the C extension.

Standard library only, so that build_native.py (run by setuptools before the
package can be imported) loads this file by path, and trie.py imports it:
one definition for the stamp compiled in and the stamp checked at import.
"""
import hashlib
import os

HERE = os.path.dirname(os.path.abspath(__file__))

# An explicit list, not a glob: cffi writes its generated _xsd_native.c next
# to them on in-place builds.
STAMP_FILES = ("alloc.h", "hash.h", "native.cdef", "trie.c", "trie.h", "store.c", "store.h", "store.cdef",
               "engine.c", "engine.h", "engine.cdef", "watchreg.c", "watchreg.h", "watchreg.cdef")


def source_stamp(directory=HERE):
    """Hex digest over STAMP_FILES in ``directory`` (name and bytes of each)."""
    h = hashlib.sha256()
    for name in STAMP_FILES:
        with open(os.path.join(directory, name), "rb") as f:
            data = f.read()
        h.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return h.hexdigest()[:32]
