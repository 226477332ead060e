"""`.env.example` lists every environment variable the project reads (STYLE.md, Settings)."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT

READERS = re.compile(r"""env(?:str|bool|int|float)\(\s*["']([A-Z][A-Z0-9_]*)["']""")
EXAMPLE_LINE = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=", re.MULTILINE)
# Blocks of healthledger.settings kept in modules of their own (it imports each whole).
SETTINGS_PARTS = REPO_ROOT / "healthledger" / "settings_parts"


def _read_by(relative_path: str) -> set[str]:
    return set(READERS.findall((REPO_ROOT / relative_path).read_text()))


def test_env_example_lists_every_variable_that_settings_and_make_run_read() -> None:
    listed = set(EXAMPLE_LINE.findall((REPO_ROOT / ".env.example").read_text()))
    settings = ["healthledger/settings.py", *(str(p.relative_to(REPO_ROOT)) for p in SETTINGS_PARTS.glob("*.py"))]
    read = set().union(*map(_read_by, settings)) | _read_by("portal/management/commands/seed_demo.py") | {"PORT"}

    assert read - listed == set(), "add these to .env.example and the README's configuration table"
    assert {"DATABASE_URL", "REDIS_URL", "CHAIN_RPC_URL", "DEMO_PASSWORD", "HEALTHLEDGER_MASTER_KEY"} <= read


def test_the_readme_configuration_table_has_a_row_for_each_variable_of_env_example() -> None:
    listed = set(EXAMPLE_LINE.findall((REPO_ROOT / ".env.example").read_text()))
    readme = (REPO_ROOT / "README.md").read_text()

    assert {name for name in listed if f"| `{name}` |" not in readme} == set()
