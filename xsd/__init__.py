"""xsd: a xenstore-compatible, watchable key-value daemon."""
__version__ = "0.1.0"
