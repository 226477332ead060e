"""`manage.py seed_demo`: the demo users and the demo patient's generated record, idempotently."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from accounts.models import User
from audit.models import AccessLogEntry
from records.demo import DEMO_PATIENT_SEED, generate_patient_bundle
from records.models import Patient, Resource, ResourceVersion

DEMO_ROLES = {
    "demo.patient": "patient",
    "dr.demo": "clinician",
    "demo.researcher": "researcher",
    "demo.steward": "steward",
}


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):  # type: ignore[no-untyped-def]
    # PBKDF2's deliberate slowness is seconds per test here; what is hashed does not matter to these tests.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def _counts() -> tuple[int, int, int, int, int]:
    return (
        User.objects.count(),
        Patient.objects.count(),
        Resource.objects.count(),
        ResourceVersion.objects.count(),
        AccessLogEntry.objects.count(),
    )


@pytest.mark.django_db
def test_seed_demo_creates_the_four_demo_users_and_imports_the_patients_generated_record(monkeypatch) -> None:
    monkeypatch.delenv("DEMO_PASSWORD", raising=False)

    output = _seed()

    users = {u.username: u for u in User.objects.all()}
    assert {name: str(u.role) for name, u in users.items()} == DEMO_ROLES
    assert all(u.check_password("healthledger-demo") for u in users.values())
    patient = Patient.objects.get()
    assert patient.user == users["demo.patient"]
    expected = len(generate_patient_bundle(DEMO_PATIENT_SEED)["entry"])
    assert Resource.objects.filter(patient=patient).count() == expected
    assert list(AccessLogEntry.objects.values_list("actor", "action", "patient_ref")) == [
        ("system:seed_demo", "records.write", patient.pk)
    ]
    assert output.splitlines()[0] == "Demo logins (password: healthledger-demo):"
    assert f"demo.patient     patient     created, record of {expected} resources imported" in output


@pytest.mark.django_db
def test_a_second_seed_changes_nothing(monkeypatch) -> None:
    monkeypatch.delenv("DEMO_PASSWORD", raising=False)
    _seed()
    before = _counts()

    output = _seed()

    assert _counts() == before
    assert output.count("already there") == 4
    assert "imported" not in output


@pytest.mark.django_db
def test_an_existing_demo_user_keeps_their_password_and_the_output_says_it_differs(monkeypatch) -> None:
    monkeypatch.setenv("DEMO_PASSWORD", "first-password-1")
    _seed()
    monkeypatch.setenv("DEMO_PASSWORD", "second-password-2")

    output = _seed()

    assert User.objects.get(username="dr.demo").check_password("first-password-1")
    assert "password: second-password-2" in output
    assert output.count("with another password") == 4


@pytest.mark.django_db
def test_a_demo_patient_without_a_record_gets_one_without_a_second_patient() -> None:
    from accounts.services import user_create

    user_create(username="demo.patient", password="own-password-9", role="patient")

    _seed()

    assert Patient.objects.filter(user__username="demo.patient").count() == 1
    assert Resource.objects.count() == len(generate_patient_bundle(DEMO_PATIENT_SEED)["entry"])


@pytest.mark.django_db
def test_a_cohort_adds_patients_with_their_own_records_who_cannot_log_in() -> None:
    output = _seed("--cohort", "2")

    cohort = User.objects.filter(username__startswith="demo.cohort.").order_by("username")
    assert [u.username for u in cohort] == ["demo.cohort.001", "demo.cohort.002"]
    assert not any(u.has_usable_password() for u in cohort)
    per_patient = {
        p.user.username: Resource.objects.filter(patient=p).count()
        for p in Patient.objects.filter(user__in=cohort).select_related("user")
    }
    assert per_patient == {
        "demo.cohort.001": len(generate_patient_bundle(1000)["entry"]),
        "demo.cohort.002": len(generate_patient_bundle(1001)["entry"]),
    }
    assert f"cohort: 2 patients, {sum(per_patient.values())} resources imported now" in output
