"""Shared fixtures: the named personas every endpoint test speaks about, and isolated keys.

Personas (STYLE.md): `patient` (owns a record), `clinician` (the one she grants,
once the consent issue lands), `other_clinician` (never granted), `researcher`,
`steward`, and `other_patient` (a second record that the first must never reach).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from healthledger.lib.keyfiles import clear_key_caches

REPO_ROOT = Path(__file__).resolve().parent.parent
# The 40 Synthea bundles live beside the repository (../shared/fixtures/synthea-r4), not in it;
# HEALTHLEDGER_SYNTHEA_DIR points elsewhere. The project never needs them outside tests and bench.
SYNTHEA_DIR = Path(
    os.environ.get("HEALTHLEDGER_SYNTHEA_DIR") or REPO_ROOT.parent / "shared" / "fixtures" / "synthea-r4"
)


@pytest.fixture(autouse=True)
def isolated_keys(settings, tmp_path_factory):  # type: ignore[no-untyped-def]
    """Every test gets its own key directory (master, index and audit keys are created fresh) and var directory."""
    settings.KEYS_DIR = tmp_path_factory.mktemp("keys")
    # What commands write under the var directory at run time (the demo patient's phrase file) stays in the test's.
    settings.VAR_DIR = tmp_path_factory.mktemp("var")
    settings.HEALTHLEDGER_MASTER_KEY = ""
    settings.HEALTHLEDGER_INDEX_KEY = ""
    settings.HEALTHLEDGER_AUDIT_KEY = ""
    # Tests are not about password hashing; PBKDF2 would cost 0.3 s per persona.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    clear_key_caches()
    yield settings.KEYS_DIR
    clear_key_caches()


@pytest.fixture
def synthea_dir() -> Path:
    if not any(SYNTHEA_DIR.glob("*.json")):
        pytest.skip(f"the Synthea fixtures are missing: no bundles in {SYNTHEA_DIR} (set HEALTHLEDGER_SYNTHEA_DIR)")
    return SYNTHEA_DIR


@pytest.fixture
def synthea_files(synthea_dir: Path) -> list[Path]:
    return sorted(synthea_dir.glob("*.json"))


def _user(username: str, role: str):  # type: ignore[no-untyped-def]
    from accounts.services import user_create

    return user_create(username=username, password="correct horse battery staple", role=role)


@pytest.fixture
def patient_user(db):  # type: ignore[no-untyped-def]
    return _user("alice", "patient")


@pytest.fixture
def patient(patient_user):  # type: ignore[no-untyped-def]
    """Alice's record (records.Patient), empty until a test imports data into it."""
    from records.services import patient_create

    return patient_create(user=patient_user)


@pytest.fixture
def other_patient(db):  # type: ignore[no-untyped-def]
    from records.services import patient_create

    return patient_create(user=_user("bob", "patient"))


@pytest.fixture
def clinician(db):  # type: ignore[no-untyped-def]
    return _user("dr_carol", "clinician")


@pytest.fixture
def other_clinician(db):  # type: ignore[no-untyped-def]
    return _user("dr_mallory", "clinician")


@pytest.fixture
def researcher(db):  # type: ignore[no-untyped-def]
    return _user("rita_research", "researcher")


@pytest.fixture
def steward(db):  # type: ignore[no-untyped-def]
    return _user("sam_steward", "steward")
