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


def page_json(html: str, element_id: str) -> object:
    """A json_script element's value from a page (the typed data keys.js signs)."""
    import json
    import re

    found = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html, re.S)
    assert found is not None, f"no {element_id} in the page"
    return json.loads(found.group(1))


def sign_and_post(client: Client, url: str, patient, data: dict[str, object] | None = None):  # type: ignore[no-untyped-def]
    """What keys.js does on a signing page (share review, revoke, join, withdraw): her key signs the page's typed
    data, and only the signature is posted."""
    from tests.patient_device import device_of

    device = device_of(patient)
    typed = page_json(client.get(url).content.decode(), "typed-data")
    return client.post(url, {**(data or {}), "signature": device.sign(typed)})  # type: ignore[arg-type]


def erase_signed(client: Client, patient, data: dict[str, object]):  # type: ignore[no-untyped-def]
    """The erase page as her browser submits it: every revocation erasure makes, signed by her key."""
    import json

    from tests.patient_device import device_of

    page = client.get("/erase/").content.decode()
    if 'id="revocations-typed-data"' not in page:
        return client.post("/erase/", data)
    device = device_of(patient)
    items = page_json(page, "revocations-typed-data")
    signatures = {item["grant_id"]: device.sign(item["typed_data"]) for item in items}  # type: ignore[union-attr]
    return client.post("/erase/", {**data, "revocation_signatures": json.dumps(signatures)})
