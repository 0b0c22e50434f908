"""The README's Python example runs as written against a fresh server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO, Server


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(r"<!-- python-example -->\n```python\n(.*?)```", text, re.S)
    assert m, "README.md lost its <!-- python-example --> block"
    return m.group(1)


def test_the_readme_example_runs(server: Server, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(readme_example())
    env = dict(os.environ, KEEL_URL=server.url, KEEL_API_KEY=server.keys["admin"])
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "trained version 1 AUC 0." in r.stdout
    assert "2000 labels stored" in r.stdout
    assert "rows, drifted:" in r.stdout
    assert "loans.md" in r.stdout
    assert "100% " in r.stderr  # the progress bar
