"""The committed key bundle (portal/static/portal/keys.js) is exactly what esbuild makes of its source today."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

BUNDLE = REPO_ROOT / "portal" / "static" / "portal" / "keys.js"
ESBUILD = REPO_ROOT / "node_modules" / ".bin" / "esbuild"


def test_the_committed_key_bundle_is_built_from_its_source_with_the_pinned_packages(tmp_path: Path) -> None:
    if not ESBUILD.exists():
        pytest.skip("node_modules is missing: npm install")
    script = json.loads((REPO_ROOT / "package.json").read_text())["scripts"]["build:keys"]
    args = script.split()[1:]
    out = tmp_path / "keys.js"
    args = [f"--outfile={out}" if a.startswith("--outfile=") else a for a in args]

    subprocess.run([str(ESBUILD), *args], cwd=REPO_ROOT, check=True, capture_output=True, timeout=120)

    assert out.read_bytes() == BUNDLE.read_bytes(), "rebuild it: npm run build:keys"
