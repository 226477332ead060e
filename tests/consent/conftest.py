"""Fixtures for consent tests: the in-process EVM with ConsentRegistry deployed (from tests/ledger)."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from django.utils import timezone

from consent.models import Grant
from ledger.outbox import outbox_relay
from records.demo import generate_patient_bundle
from records.models import Resource
from records.services import fhir_ingest
from tests.ledger.conftest import chain  # noqa: F401 - the in-process chain fixture, shared with ledger tests
from tests.patient_device import grant_issue_signed


@pytest.fixture
def alice_record(patient):  # type: ignore[no-untyped-def]
    """Alice's record with a year of generated data: vital signs, labs, conditions, medications."""
    bundle = generate_patient_bundle(7, years=1)
    fhir_ingest(payload=orjson.dumps(bundle), actor="system:test", patient=patient)
    return patient


@pytest.fixture
def an_observation(alice_record) -> Resource:  # type: ignore[no-untyped-def]
    return Resource.objects.filter(patient=alice_record, resource_type="Observation").order_by("pk").first()


@pytest.fixture
def deployed(chain):  # type: ignore[no-untyped-def]  # noqa: F811
    """The in-process chain with a recorded Deployment: patients sign against it from the database."""
    from ledger.services import deployment_create

    deployment_create(client=chain, fund_from_node=False)
    return chain


@pytest.fixture
def issue_grant(alice_record, patient_user, clinician, deployed):  # type: ignore[no-untyped-def]
    """Alice grants (by default) Carol read access to Observations for treatment, for 30 days; relayed on chain."""

    def issue(*, relay: bool = True, **overrides: object) -> Grant:
        now = timezone.now()
        terms: dict[str, object] = {
            "patient": alice_record,
            "by": patient_user,
            "grantee": clinician,
            "resource_types": ["Observation"],
            "actions": ["read"],
            "purpose": "TREAT",
            "not_before": now - timedelta(minutes=1),
            "not_after": now + timedelta(days=30),
        }
        terms.update(overrides)
        grant = grant_issue_signed(**terms)
        if relay:
            report = outbox_relay()
            assert report.failed == 0
            # One pass sends and, with one confirmation required, sees it mined on the in-process chain.
            if Grant.objects.get(pk=grant.pk).status == "pending":
                outbox_relay()
        return Grant.objects.get(pk=grant.pk)

    return issue
