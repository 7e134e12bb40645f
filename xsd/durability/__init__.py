"""Record format, journal (group commit), snapshots and restored state."""
