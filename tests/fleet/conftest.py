"""Fixtures for the fleet tests: a real nats-server with JetStream, real xsd daemons."""
import pytest

from tests.nats_process import NatsServer


@pytest.fixture
def nats_server(tmp_path):
    """nats-server -js on 127.0.0.1 (a free port), its store in tmp_path; stopped after."""
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.stop()
