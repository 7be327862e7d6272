"""Docs that are generated from the code stay in step with it."""
from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_reference_matches_the_models():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_reference.py")], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert (ROOT / "docs" / "reference.md").read_text() == out, \
        "regenerate: python scripts/gen_reference.py > docs/reference.md"
    for needle in ("`reporters[].type`", "`target.pods.selector`", "`webhook.certManager.enabled`",
                   "`otus_capture_drops_total`"):
        assert needle in out


def test_readme_starts_with_the_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    block = lines[lines.index("```sh") + 1: lines.index("```sh") + 3]
    assert block[0].startswith("./scripts/demo") and block[1].startswith("./scripts/test")
    assert "bash scripts/test" in (ROOT / ".ci" / "run").read_text() or "scripts/test" in (ROOT / ".ci" / "run").read_text()
