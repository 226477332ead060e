"""Production settings: `manage.py check --deploy` is clean, with HTTPS enforced, when DJANGO_DEBUG is off."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT


def _production_env(var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "HEALTHLEDGER_", "SECURE_"))}
    env.pop("DATABASE_URL", None)
    env.update(
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        DJANGO_ALLOWED_HOSTS="healthledger.example",
        HEALTHLEDGER_MASTER_KEY=base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        HEALTHLEDGER_VAR_DIR=str(var_dir),
    )
    return env


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_passes_at_warning_level_with_production_settings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = _manage(_production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")

    assert result.returncode == 0, result.stderr


def test_production_settings_enforce_https_and_trust_the_proxys_scheme_header(tmp_path) -> None:  # type: ignore[no-untyped-def]
    names = [
        "SECURE_HSTS_SECONDS",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SECURE_SSL_REDIRECT",
        "SECURE_PROXY_SSL_HEADER",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
    ]
    script = (
        "from django.conf import settings; import json; "
        f"print('SETTINGS', json.dumps([getattr(settings, n) for n in {names}]))"
    )

    result = _manage(_production_env(tmp_path), "shell", "-c", script)

    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("SETTINGS "))
    assert json.loads(line.removeprefix("SETTINGS ")) == [
        31536000,
        True,
        True,
        ["HTTP_X_FORWARDED_PROTO", "https"],
        True,
        True,
    ]
