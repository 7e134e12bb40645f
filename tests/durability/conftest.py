"""Fixtures of the durability tests."""
import asyncio

import pytest


@pytest.fixture
def loop():
    """An event loop of the test's own, for a request pump driven by hand."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()
