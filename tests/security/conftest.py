"""Fixtures the attacks here share with the suites they attack: guests over their rings
(tests/guests) and watchlib clients (tests/watchlib)."""
from tests.guests.conftest import guests, hv, toolstack, watcher  # noqa: F401  (fixtures)
from tests.watchlib.conftest import blocker, client, other  # noqa: F401  (fixtures)
