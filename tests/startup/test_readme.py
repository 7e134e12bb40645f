"""The README's option synopsis is `xsd --help`'s, and ./dev explains itself.

After changing an option: ``python -m tests.startup.test_readme`` rewrites the block.
"""
import os
import re
import subprocess
import sys

from tests.daemon_process import ROOT

README = os.path.join(ROOT, "README.md")
BLOCK = re.compile(r"(<!-- xsd-usage:[^\n]*-->\n```\n)(.*?)(```\n<!-- /xsd-usage -->)", re.S)


def help_usage() -> str:
    env = dict(os.environ, COLUMNS="100", PYTHONPATH=ROOT)
    text = subprocess.run([sys.executable, "-m", "xsd", "--help"], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True).stdout
    return text[:text.index("\n\n") + 1]


def test_readme_usage_is_xsd_help():
    with open(README, encoding="utf-8") as f:
        match = BLOCK.search(f.read())
    assert match, "README.md lacks the xsd-usage block"
    assert match.group(2) == help_usage(), "run: python -m tests.startup.test_readme"


def test_docs_index_lists_every_page_and_readme_links_it():
    with open(README, encoding="utf-8") as f:
        assert "(docs/README.md)" in f.read()
    with open(os.path.join(ROOT, "docs", "README.md"), encoding="utf-8") as f:
        index = f.read()
    pages = sorted(p for p in os.listdir(os.path.join(ROOT, "docs"))
                   if p.endswith(".md") and p != "README.md")
    for page in pages:
        assert f"({page})" in index, page


def test_dev_without_arguments_prints_usage():
    result = subprocess.run([os.path.join(ROOT, "dev")], capture_output=True, text=True,
                            check=False, timeout=30)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: ./dev COMMAND")
    for command in ("setup", "run", "shell", "env", "test", "help"):
        assert re.search(rf"^  {command}\b", result.stderr, re.M), command
    assert "#" not in result.stderr                  # not the script's comment lines


def test_dev_env_puts_the_commands_on_path():
    script = 'eval "$(./dev env)"; command -v xsd xsd-hv xenstore-read xenstore-control; ' \
             'echo "$XENSTORED_PATH"'
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "XENSTORED_PATH")}
    env["PATH"] = "/usr/bin:/bin"
    result = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True,
                            text=True, check=True, timeout=30)
    lines = result.stdout.splitlines()
    venv_bin = os.path.join(ROOT, ".venv", "bin")
    assert lines[:4] == [os.path.join(venv_bin, name)
                         for name in ("xsd", "xsd-hv", "xenstore-read", "xenstore-control")]
    assert lines[4] == os.path.join(ROOT, "run", "socket")


def _rewrite() -> None:
    with open(README, encoding="utf-8") as f:
        text = f.read()
    usage = help_usage()
    text = BLOCK.sub(lambda m: m.group(1) + usage + m.group(3), text)
    with open(README, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    _rewrite()
