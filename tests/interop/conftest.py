import pytest

from tests import anchors


@pytest.fixture
def cxenstored(tmp_path):
    why = anchors.available()
    if why:
        pytest.skip(f"reference C xenstored unavailable: {why}")
    ref = anchors.ReferenceDaemon(tmp_path / "cx")
    yield ref
    ref.stop()
