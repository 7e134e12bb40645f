"""DeliveryQueue, sans-I/O: coalescing, the bound, LostEvents, Resync, barriers, compaction."""
import random

from watchlib.subscription import DeliveryQueue, Event, LostEvents, Resync, Subscription


def sub(max_pending=4):
    return Subscription(None, "/q", lambda e: None, max_pending=max_pending)


def drain(q):
    out = []
    while True:
        e = q.pop()
        if e is None:
            return out
        out.append(e[1])


def test_fifo_across_subscriptions():
    q, a, b = DeliveryQueue(), sub(), sub()
    q.push_event(a, "/q/1")
    q.push_event(b, "/q/2")
    q.push_event(a, "/q/3")
    assert [(i.subscription, i.path) for i in drain(q)] == [(a, "/q/1"), (b, "/q/2"), (a, "/q/3")]


def test_coalescing_keeps_first_position_and_clears_initial():
    q, a = DeliveryQueue(), sub()
    q.push_event(a, "/q/x", initial=True)
    q.push_event(a, "/q/y")
    assert not q.push_event(a, "/q/x")
    [x, y] = drain(q)
    assert (x.path, x.initial, y.path) == ("/q/x", False, "/q/y")
    assert a.coalesced == 1


def test_overflow_drops_and_reports_once():
    q, a = DeliveryQueue(), sub(max_pending=3)
    for i in range(8):
        q.push_event(a, f"/q/{i}")
    items = drain(q)
    assert isinstance(items[0], LostEvents) and items[0].dropped == 6
    assert [i.path for i in items[1:]] == ["/q/6", "/q/7"]
    assert len(q) == 0


def test_resync_supersedes_pending_and_lost():
    q, a = DeliveryQueue(), sub(max_pending=2)
    for i in range(5):
        q.push_event(a, f"/q/{i}")
    q.push_resync(a)
    q.push_resync(a)                 # one is enough
    q.push_event(a, "/q/after")
    items = drain(q)
    assert [type(i) for i in items] == [Resync, Event]
    assert len(q) == 0


def test_barrier_comes_out_after_everything_before_it():
    q, a = DeliveryQueue(), sub()
    q.push_event(a, "/q/1")
    q.push_barrier("B")
    q.push_event(a, "/q/2")
    q.push_event(a, "/q/1")          # merges into the one before the barrier
    out = []
    while (e := q.pop()) is not None:
        out.append(e[1] if e[0] is None else e[1].path)
    assert out == ["/q/1", "B", "/q/2"]


def test_drop_forgets_a_cancelled_subscription():
    q, a, b = DeliveryQueue(), sub(), sub()
    q.push_event(a, "/q/1")
    q.push_event(b, "/q/2")
    q.drop(a)
    assert [i.path for i in drain(q)] == ["/q/2"]


LOST, RESYNC = ("LOST",), ("RESYNC",)     # markers in the model (events are str)


def test_random_operations_against_a_model():
    """Per subscription, what comes out is: the model's items, in order."""
    rng = random.Random(1234)
    q = DeliveryQueue()
    q.COMPACT_AT = 8                # exercise compaction
    subs = [sub(max_pending=rng.randint(1, 6)) for _ in range(4)]
    model = {id(s): [] for s in subs}   # list of pending paths / markers, per sub
    lost = {id(s): 0 for s in subs}
    for _ in range(5000):
        s = rng.choice(subs)
        r = rng.random()
        m = model[id(s)]
        if r < 0.7:
            path = f"/q/{rng.randint(0, 9)}"
            q.push_event(s, path)
            if path not in m:
                events = [x for x in m if isinstance(x, str)]
                if len(events) >= s.max_pending:
                    lost[id(s)] += len(events)
                    m[:] = [x for x in m if not isinstance(x, str)]
                    if LOST not in m:
                        m.append(LOST)
                m.append(path)
        elif r < 0.75:
            q.push_resync(s)
            m[:] = [x for x in m if x == RESYNC] or [RESYNC]
            lost[id(s)] = 0
        else:
            e = q.pop()
            if e is None:
                assert all(not v for v in model.values())
                continue
            got_sub, item = e
            want = model[id(got_sub)].pop(0)
            if isinstance(item, Event):
                assert item.path == want
            elif isinstance(item, LostEvents):
                assert want == LOST and item.dropped == lost[id(got_sub)]
                lost[id(got_sub)] = 0
            else:
                assert want == RESYNC
        assert len(q) == sum(len(v) for v in model.values())
