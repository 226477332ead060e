"""`.env.example` lists every environment variable the project reads (STYLE.md, Settings)."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT

READERS = re.compile(r"""env(?:str|bool|int|float)\(\s*["']([A-Z][A-Z0-9_]*)["']""")
EXAMPLE_LINE = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=", re.MULTILINE)


def _read_by(relative_path: str) -> set[str]:
    return set(READERS.findall((REPO_ROOT / relative_path).read_text()))


def test_env_example_lists_every_variable_that_settings_and_make_run_read() -> None:
    listed = set(EXAMPLE_LINE.findall((REPO_ROOT / ".env.example").read_text()))
    read = _read_by("healthledger/settings.py") | _read_by("portal/management/commands/seed_demo.py") | {"PORT"}

    assert read - listed == set(), "add these to .env.example and the README's configuration table"
    assert {"DATABASE_URL", "REDIS_URL", "CHAIN_RPC_URL", "DEMO_PASSWORD", "HEALTHLEDGER_MASTER_KEY"} <= read


def test_the_readme_configuration_table_has_a_row_for_each_variable_of_env_example() -> None:
    listed = set(EXAMPLE_LINE.findall((REPO_ROOT / ".env.example").read_text()))
    readme = (REPO_ROOT / "README.md").read_text()

    assert {name for name in listed if f"| `{name}` |" not in readme} == set()
