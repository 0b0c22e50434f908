"""Regenerates keel_client/models.py from the server's openapi.json (the repository root's), or checks it.

    python clients/python/generate.py           # rewrite src/keel_client/models.py
    python clients/python/generate.py --check   # exit 1 when the committed models differ from a fresh generation

The generator and its formatters are pinned in requirements-dev.lock, so the output is reproducible.
"""

from __future__ import annotations

import argparse
import difflib
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPEC = HERE.parent.parent / "openapi.json"
TARGET = HERE / "src" / "keel_client" / "models.py"

OPTIONS = [
    "--input-file-type",
    "openapi",
    "--output-model-type",
    "pydantic_v2.BaseModel",
    "--target-python-version",
    "3.10",
    "--use-standard-collections",
    "--use-union-operator",
    "--field-constraints",
    "--use-schema-description",
    "--use-field-description",
    "--disable-timestamp",
    "--formatters",
    "black",
    "isort",
    "--custom-file-header",
    "# Generated from openapi.json by clients/python/generate.py (datamodel-code-generator, pinned in\n"
    "# requirements-dev.lock). Do not edit: change the server, regenerate, commit both.",
]


def generate(spec: Path, out: Path) -> None:
    cmd = [sys.executable, "-m", "datamodel_code_generator", "--input", str(spec), "--output", str(out), *OPTIONS]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"datamodel-code-generator failed ({r.returncode}):\n{r.stderr}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    ap.add_argument("--spec", type=Path, default=SPEC, help="the OpenAPI document (default: the repository's)")
    a = ap.parse_args()
    # Always generated outside the package: the formatters read the nearest pyproject.toml of the output path,
    # so writing in place and checking in a temporary folder would format differently.
    with tempfile.TemporaryDirectory() as d:
        fresh = Path(d) / "models.py"
        generate(a.spec, fresh)
        want = fresh.read_text()
    if not a.check:
        TARGET.write_text(want)
        print(f"wrote {TARGET}")
        return 0
    have = TARGET.read_text() if TARGET.exists() else ""
    if have == want:
        print(f"{TARGET.name} matches {a.spec.name}")
        return 0
    diff = difflib.unified_diff(
        have.splitlines(keepends=True), want.splitlines(keepends=True), "committed models.py", "fresh generation", n=1
    )
    sys.stderr.write("".join(list(diff)[:80]))
    sys.stderr.write(
        f"\n{TARGET} is stale: {a.spec} changed without regenerating the client models.\n"
        "Run: python clients/python/generate.py (in the client venv) and commit the result.\n"
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
