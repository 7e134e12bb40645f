"""The architecture, checked: the core does no I/O, and imports point one way.

xsd/core is the request path (README.md, "Request path"); it must not
import asyncio, the durability code or the transports: they listen to it and
build it (``xsd.core.daemon.Host``, ``Listener``), never the reverse.
"""
import ast
import pathlib
import subprocess
import sys

import xsd

PACKAGE = pathlib.Path(xsd.__file__).parent
# package -> packages it must never import (directly or through another module)
FORBIDDEN = {
    "xsd.core": ("asyncio", "xsd.durability", "xsd.transport", "socket", "selectors"),
    "xsd.durability": ("asyncio", "xsd.transport"),
}


def test_the_core_loads_without_asyncio_durability_or_transports():
    probe = (
        "import sys\n"
        "import xsd.core.daemon, xsd.core.dispatch, xsd.core.ops, xsd.core.control\n"
        "from xsd.config import Config\n"
        "d = xsd.core.daemon.Daemon(Config(rundir='/nonexistent'))\n"
        "assert d.check() == [], d.check()\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'asyncio'\n"
        "             or m.startswith(('xsd.durability', 'xsd.transport')))\n"
        "print(' '.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == []


def _imports(path: pathlib.Path, module: str) -> set:
    """Absolute names of the modules ``path`` imports (relative imports resolved)."""
    names = set()
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module
            names.add(prefix)
            names.update(f"{prefix}.{alias.name}" for alias in node.names)
    return names


def test_imports_point_one_way():
    problems = []
    for package, forbidden in FORBIDDEN.items():
        folder = PACKAGE / package.split(".", 1)[1]
        for path in sorted(folder.rglob("*.py")):
            module = package + "." + ".".join(path.relative_to(folder).with_suffix("").parts)
            for name in _imports(path, module):
                if any(name == f or name.startswith(f + ".") for f in forbidden):
                    problems.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert problems == []
