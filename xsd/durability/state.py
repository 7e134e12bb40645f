"""What a snapshot holds besides nodes (META), and loading snapshot records into a daemon.

The daemon gives and takes its state only through ``Daemon.to_state`` /
``from_state`` and its store; guests' watches (``guest_watches.py``) ride in
the same META entry.
"""

from . import snapshot
from .journal import Codec, CorruptError


def meta_state(d, guest_watches=None) -> dict:
    """Domains, quotas, features, special permissions and guests' watches, as JSON-able data."""
    if guest_watches is None and d.persist is not None:
        guest_watches = d.persist.guest_watches
    return {**d.to_state(),
            "guest_watches": guest_watches.state() if guest_watches is not None else {}}


def meta_loader(metas: list, guest_watches):
    """The META handler while loading: each kept for ``from_state`` (the last counts), and
    the guests' watches in it restored at once, so that the WATCH / UNWATCH entries of the
    journal apply in order around it (``GuestWatches.replay``)."""
    def on_meta(state: dict) -> None:
        metas.append(state)
        if guest_watches is not None:
            guest_watches.restore(state.get("guest_watches", {}))   # absent: saved before
    return on_meta


def load_state(d, data, offset: int, name: str, guest_watches=None) -> None:
    """Load snapshot records (``data`` from ``offset``) into ``d``, whose store holds only the root."""
    metas = []
    snapshot.load(data, offset, name, Codec(), d.store, meta_loader(metas, guest_watches))
    if metas:
        d.from_state(metas[-1])
    finish_load(d, name)


def finish_load(d, name: str) -> None:
    """Recount owners (the quota accounting) and check the tree before serving it."""
    store = d.store
    store.recount()
    problems = store.check()
    if problems:
        raise CorruptError(f"{name}: the loaded store is inconsistent: " + "; ".join(problems[:5]))
