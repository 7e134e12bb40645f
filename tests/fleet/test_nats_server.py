"""The nats-server fixture itself: JetStream on, store kept across a restart."""
import asyncio

import nats


def test_jetstream_kv_survives_a_restart(nats_server):
    async def put():
        nc = await nats.connect(nats_server.url)
        kv = await nc.jetstream().create_key_value(bucket="probe")
        await kv.put("a.b", b"1")
        await nc.close()

    async def get():
        nc = await nats.connect(nats_server.url)
        kv = await nc.jetstream().key_value("probe")
        value = (await kv.get("a.b")).value
        await nc.close()
        return value

    asyncio.run(put())
    nats_server.restart()
    assert asyncio.run(get()) == b"1"
    assert "127.0.0.1" in nats_server.log() and "0.0.0.0" not in nats_server.log()
