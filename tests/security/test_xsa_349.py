"""XSA-349 (client side): a client library queued watch events without limit when its
consumer was slow; watchlib's queue is bounded and says what it dropped."""
from watchlib import Event, LostEvents

from tests.waiting import wait_for


def test_xsa_349_watchlib_queue_is_bounded_and_loss_is_reported(client, other, blocker):
    got = []
    sub = client.watch("/xsa349", got.append, initial=False, max_pending=50)
    with blocker.hold(client):
        for i in range(2000):
            other.write(f"/xsa349/k{i}", b"")
        wait_for(lambda: sub.lost + sub.pending == 2000, what="every event seen")
        assert sub.pending <= 50
    client.sync()
    lost = sum(i.dropped for i in got if isinstance(i, LostEvents))
    delivered = sum(1 for i in got if isinstance(i, Event))
    assert lost > 0 and lost + delivered == 2000
