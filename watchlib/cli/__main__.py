"""``python -m watchlib.cli <mode> [options] args``: the ``xenstore`` multi-call form."""
import sys

from . import main

if __name__ == "__main__":
    sys.exit(main(["xenstore", *sys.argv[1:]]))
