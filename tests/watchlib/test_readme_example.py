"""The README's watchlib example, run as written against the real daemon: one line per
real change, a removed subtree reported, nothing for a rewrite of the same value."""
import os
import re
import signal

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def readme_example() -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    return re.search(r"```python\n(import os, signal\n.*?)```", text, re.S).group(1)


def test_readme_example(daemon, other, monkeypatch, capsys):
    other.write("/local/domain/0/device/vif/0/state", b"4")
    monkeypatch.setenv("XENSTORED_PATH", daemon.socket_path)
    namespace = {}

    def pause():                      # instead of waiting for a signal: make changes
        client = namespace["client"]
        other.write("/local/domain/0/device/vif/1/state", b"1")
        other.write("/local/domain/0/device/vif/0/state", b"4")     # the same value
        other.write("/local/domain/0/device/vif/0/mac", b"00:16:3e:00:00:01")
        client.sync()
        other.rm("/local/domain/0/device")
        client.sync()

    monkeypatch.setattr(signal, "pause", pause)
    try:
        exec(compile(readme_example(), "README.md", "exec"), namespace)
    finally:
        if "client" in namespace:
            namespace["client"].close()
    lines = capsys.readouterr().out.splitlines()
    assert sorted(lines) == sorted([
        "dom0 vif0: state 4",
        "domain 0 (00000000-0000-0000-0000-000000000000) is here",
        "dom0 vif1: state 1",
        "dom0 vif0: gone (was 4)",
        "dom0 vif1: gone (was 1)"])
    assert lines.index("dom0 vif0: state 4") < lines.index("dom0 vif1: state 1") \
        < lines.index("dom0 vif0: gone (was 4)")
