"""xsd-fleet: each host's xenstore changes in a NATS JetStream KV bucket, its domains on a stream.

``bridge.Bridge`` is the bridge, ``__main__`` its command line; the key scheme
and the consumer side (``FleetMirror``) are in ``watchlib.fleet``.  See docs/fleet.md.
"""
from .bridge import DEFAULT_PATTERNS, DEFAULT_STREAM, Bridge

__all__ = ["Bridge", "DEFAULT_PATTERNS", "DEFAULT_STREAM"]
