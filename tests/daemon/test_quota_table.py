"""xsd.core.quota's table and ``name=value`` parser, which the command line uses (-Q/-q)."""
import pytest

from xsd.core import quota


def test_the_nine_quotas_of_c_xenstored_with_its_defaults():
    assert list(quota.QUOTAS) == ["nodes", "watches", "transactions", "outstanding",
                                  "transaction-nodes", "memory", "node-size", "path-max",
                                  "permissions"]
    assert quota.DEFAULTS["memory"] == 2621440 and quota.DEFAULTS["path-max"] == 2048
    assert quota.SOFT_DEFAULTS == {"memory": 2097152}


@pytest.mark.parametrize("text,soft,expected", [
    ("nodes=5", False, ("nodes", 5)), ("path-max=4096", False, ("path-max", 4096)),
    ("memory=100", True, ("memory", 100)), ("memory=0", False, ("memory", 0)),
])
def test_parse_assignment(text, soft, expected):
    assert quota.parse_assignment(text, soft) == expected


@pytest.mark.parametrize("text,soft", [
    ("nodes", False), ("nodes=", False), ("nodes=x", False), ("nodes=-1", False),
    ("nodes=4294967296", False), ("bogus=1", False), ("nodes=5", True), ("nodes= 5", False),
])
def test_parse_assignment_refuses(text, soft):
    with pytest.raises(ValueError):
        quota.parse_assignment(text, soft)


def test_soft_quotas_given_at_start():
    quotas = quota.Quotas({"nodes": 7}, {"memory": 99})
    assert quotas.get("nodes") == 7 and quotas.soft["memory"] == 99
    assert "memory           :       99 Total Xenstore memory per domain (warning level)\n" \
        in quotas.settings_text(soft=True)
