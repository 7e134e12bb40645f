"""xsd: a xenstore-compatible, watchable key-value daemon."""
import logging

__version__ = "0.1.0"

# A library import (watchlib using xsd._native, the CLI) must not print log
# records to stderr; the daemon configures real handlers in __main__.
logging.getLogger(__name__).addHandler(logging.NullHandler())
