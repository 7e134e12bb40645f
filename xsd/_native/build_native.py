"""cffi build of the native core: API mode, module ``xsd._native._xsd_native``.

Run by setuptools through ``cffi_modules`` in setup.py (so ``pip install .``
and ``pip install -e .`` compile it), or by hand to build in place::

    .venv/bin/python xsd/_native/build_native.py

The compiled module carries a stamp: a hash of the C sources and the cdef as
they were when it was built (``xsd_native_stamp()``). At import,
``xsd._native.trie`` hashes the same files shipped beside the extension and
refuses a module whose stamp differs, so editing trie.c without rebuilding
fails loudly instead of running old code.
"""
import importlib.util
import os
import shutil
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MODULE = "xsd._native._xsd_native"



def _load_sourcestamp():
    """sourcestamp.py by path: the package itself cannot be imported before it is built."""
    spec = importlib.util.spec_from_file_location("_xsd_sourcestamp", os.path.join(HERE, "sourcestamp.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_stamp = _load_sourcestamp()
STAMP_FILES, source_stamp = _stamp.STAMP_FILES, _stamp.source_stamp


STAMP = source_stamp()

# One .cdef per C module, declared together in one extension.
CDEF = ""
for _name in _stamp.CDEF_FILES:
    with open(os.path.join(HERE, _name)) as _f:
        CDEF += _f.read()

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    MODULE,
    "".join('#include "%s.h"\n' % name for name in _stamp.C_MODULES) +
    "static const char *xsd_native_stamp(void)\n"
    "{\n"
    '    return "%s";\n'
    "}\n" % STAMP,
    # Absolute: ffibuilder.compile() builds from inside its tmpdir.
    sources=[os.path.join(HERE, name + ".c") for name in _stamp.C_MODULES],
    include_dirs=[HERE],
    extra_compile_args=["-O2", "-Wall", "-Wextra"],
)


def main():
    """Build into build/cffi and copy the extension beside this file.

    Other builds of the module beside it (``pip install -e .`` names its
    ``_xsd_native.abi3.so``; Python would prefer ours, or theirs, by suffix
    order) are removed, so exactly one is left to import."""
    tmpdir = os.path.join(ROOT, "build", "cffi")
    built = ffibuilder.compile(tmpdir=tmpdir, verbose="-q" not in sys.argv)
    target = os.path.join(HERE, os.path.basename(built))
    for name in os.listdir(HERE):
        if name.startswith("_xsd_native.") and name.endswith((".so", ".pyd")):
            os.remove(os.path.join(HERE, name))
    shutil.copy2(built, target)
    print("built %s (stamp %s)" % (os.path.relpath(target, ROOT), STAMP))


if __name__ == "__main__":
    main()
