"""Build of xsd: Python packages plus the C core, compiled through cffi."""
import re
from pathlib import Path

from setuptools import find_packages, setup

# One place for the version: xsd/__init__.py (``xsd --version``, every shim's).
VERSION = re.search(r'^__version__ = "([^"]+)"', Path(__file__).with_name("xsd")
                    .joinpath("__init__.py").read_text(encoding="utf-8"), re.M).group(1)

setup(
    name="xsd",
    version=VERSION,
    description="xenstore-compatible, watchable key-value daemon",
    python_requires=">=3.9",
    packages=find_packages(include=["xsd", "xsd.*", "watchlib", "watchlib.*",
                                    "xenstore_protocol", "xenstore_protocol.*",
                                    "xsd_fleet", "xsd_fleet.*"]),
    package_data={"xsd._native": ["*.c", "*.h", "*.cdef"], "xsd.hypervisor": ["*.cdef"]},
    setup_requires=["cffi>=1.15"],
    cffi_modules=["xsd/_native/build_native.py:ffibuilder"],
    install_requires=["cffi>=1.15", "pygtrie>=2.5", "uvloop>=0.17", "prometheus-client>=0.16"],
    extras_require={
        "test": ["ruff>=0.5", "pytest>=7", "pytest-benchmark>=4", "hypothesis>=6", "pyxs>=0.4.1", "nats-py>=2.6"],
        "fleet": ["nats-py>=2.6"],
    },
    entry_points={
        "console_scripts": [
            "xsd = xsd.__main__:main",
            "xsd-hv = xsd.hv_cli:main",
            "xsd-fleet = xsd_fleet.__main__:main",
            "xenstore = watchlib.cli:main",
            "xenstore-read = watchlib.cli:read_main",
            "xenstore-write = watchlib.cli:write_main",
            "xenstore-watch = watchlib.cli:watch_main",
            "xenstore-ls = watchlib.cli:ls_main",
            "xenstore-rm = watchlib.cli:rm_main",
            "xenstore-list = watchlib.cli:list_main",
            "xenstore-exists = watchlib.cli:exists_main",
            "xenstore-chmod = watchlib.cli:chmod_main",
            "xenstore-control = watchlib.cli:control_main",
            "xenstore-top = watchlib.cli.top:main",
        ],
    },
    zip_safe=False,
)
