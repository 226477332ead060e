"""Portal fixtures: signed-in clients for each persona, and Alice's record with a live grant to Carol."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.consent.conftest import alice_record, an_observation, deployed, issue_grant  # noqa: F401
from tests.ledger.conftest import chain  # noqa: F401

PASSWORD = "correct horse battery staple"


def signed_in(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


@pytest.fixture
def alice(patient_user, patient) -> Client:  # type: ignore[no-untyped-def]
    """Alice, signed in, with her (empty) record."""
    return signed_in(patient_user)


@pytest.fixture
def bob(other_patient) -> Client:  # type: ignore[no-untyped-def]
    return signed_in(other_patient.user)


@pytest.fixture
def carol(clinician) -> Client:  # type: ignore[no-untyped-def]
    return signed_in(clinician)


@pytest.fixture
def mallory(other_clinician) -> Client:  # type: ignore[no-untyped-def]
    return signed_in(other_clinician)


@pytest.fixture
def bob_record(other_patient):  # type: ignore[no-untyped-def]
    """Bob's record with a year of generated data (another seed than Alice's)."""
    import orjson

    from records.demo import generate_patient_bundle
    from records.services import fhir_ingest

    fhir_ingest(payload=orjson.dumps(generate_patient_bundle(11, years=1)), actor="system:test", patient=other_patient)
    return other_patient
