"""Every persona against every grant state: exactly the expected permit or deny, and every decision logged."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AccessLogEntry
from consent.gate import Caller, access_log_text, resource_read, resource_read_by_id, resource_search
from consent.models import Grant
from healthledger.errors import ResourceNotFound
from tests.patient_device import grant_revoke_signed

pytestmark = pytest.mark.django_db

PERSONAS = ("patient", "clinician", "other_clinician", "researcher", "steward", "anonymous")
STATES = (
    "none",
    "pending",
    "active",
    "expired",
    "not yet valid",
    "revoked",
    "wrong purpose",
    "wrong resource type",
    "wrong action",
)


def _make_state(state: str, issue_grant, alice_record) -> None:  # type: ignore[no-untyped-def]
    now = timezone.now()
    if state == "none":
        return
    if state == "pending":
        issue_grant(relay=False)
    elif state == "active":
        issue_grant()
    elif state == "expired":
        grant = issue_grant()
        # The mirror is what decides; move its window into the past as time would.
        Grant.objects.filter(pk=grant.pk).update(not_before=now - timedelta(days=2), not_after=now - timedelta(days=1))
    elif state == "not yet valid":
        issue_grant(not_before=now + timedelta(days=1), not_after=now + timedelta(days=2))
    elif state == "revoked":
        grant_revoke_signed(grant=issue_grant(), by=alice_record.user)
    elif state == "wrong purpose":
        issue_grant(purpose="CAREMGT")
    elif state == "wrong resource type":
        issue_grant(resource_types=["Condition"])
    elif state == "wrong action":
        issue_grant(actions=["write"])


def _read(path: str, caller: Caller, alice_record, resource_id: str) -> bytes:  # type: ignore[no-untyped-def]
    # Two read paths decide alike: the patient known up front (the decision reads the grants itself),
    # and the API's read by type and id (the grants come with the located row, in the same statement).
    if path == "by-patient":
        return resource_read(caller=caller, patient=alice_record, resource_type="Observation", resource_id=resource_id)
    return resource_read_by_id(caller=caller, resource_type="Observation", resource_id=resource_id).body


@pytest.mark.parametrize("path", ["by-patient", "by-id"])
@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("persona", PERSONAS)
def test_each_persona_in_each_grant_state_gets_exactly_the_expected_decision(
    persona, state, path, request, issue_grant, alice_record, an_observation
):
    _make_state(state, issue_grant, alice_record)
    actor = (
        None
        if persona == "anonymous"
        else (alice_record.user if persona == "patient" else request.getfixturevalue(persona))
    )
    purpose = "PATRQT" if persona == "patient" else "TREAT"
    expected = persona == "patient" or (persona == "clinician" and state == "active")
    before = AccessLogEntry.objects.filter(action="records.read").count()

    caller = Caller(actor=actor, purpose=purpose)
    if expected:
        body = _read(path, caller, alice_record, an_observation.fhir_id)
        assert body.startswith(b'{"')
    else:
        with pytest.raises(ResourceNotFound):
            _read(path, caller, alice_record, an_observation.fhir_id)

    entries = list(AccessLogEntry.objects.filter(action="records.read").order_by("id"))
    assert len(entries) == before + 1
    entry = entries[-1]
    assert entry.outcome == ("permit" if expected else "deny")
    assert entry.actor == ("anonymous" if actor is None else f"user:{actor.pk}")
    assert entry.patient_ref == alice_record.pk
    assert entry.purpose == purpose
    if persona == "clinician" and state == "active":
        assert entry.grant_ref == Grant.objects.get().id


def test_a_denied_read_of_an_existing_resource_looks_exactly_like_a_missing_one(
    issue_grant, alice_record, other_clinician, an_observation
):
    issue_grant()
    caller = Caller(actor=other_clinician, purpose="TREAT")
    with pytest.raises(ResourceNotFound) as exists:
        resource_read(
            caller=caller, patient=alice_record, resource_type="Observation", resource_id=an_observation.fhir_id
        )
    with pytest.raises(ResourceNotFound) as missing:
        resource_read(caller=caller, patient=alice_record, resource_type="Observation", resource_id="does-not-exist")
    assert (exists.value.status, str(exists.value)) == (missing.value.status, str(missing.value))


def test_a_grant_narrowed_to_a_category_serves_only_that_category(issue_grant, alice_record, clinician):
    vital = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"
    issue_grant(categories=[vital])
    caller = Caller(actor=clinician, purpose="TREAT")
    page = resource_search(caller=caller, patient=alice_record, resource_type="Observation", limit=1000)
    everything = resource_search(
        caller=Caller(actor=alice_record.user), patient=alice_record, resource_type="Observation", limit=1000
    )
    assert 0 < len(page.bodies) < len(everything.bodies)
    assert all(b'"vital-signs"' in body for body in page.bodies)
    lab = next(
        ref for ref, body in zip(everything.references, everything.bodies, strict=True) if b'"laboratory"' in body
    )
    with pytest.raises(ResourceNotFound):
        resource_read(caller=caller, patient=alice_record, resource_type="Observation", resource_id=lab.split("/")[1])


def test_break_glass_needs_a_clinician_and_a_written_reason_and_is_flagged(
    alice_record, clinician, researcher, an_observation
):
    # The rest of its limits (a person signed in, the code, clinical types, window, rate): test_break_glass.py.
    def read(actor, reason):  # type: ignore[no-untyped-def]
        return resource_read(
            caller=Caller(
                actor=actor, purpose="ETREAT", reason=reason, break_glass_code="unconscious-patient", interactive=True
            ),
            patient=alice_record,
            resource_type="Observation",
            resource_id=an_observation.fhir_id,
        )

    with pytest.raises(ResourceNotFound):
        read(clinician, "")
    with pytest.raises(ResourceNotFound):
        read(researcher, "unconscious patient in the emergency room")
    assert read(clinician, "unconscious patient in the emergency room")
    flagged = AccessLogEntry.objects.get(break_glass=True)
    assert (flagged.actor, flagged.outcome, flagged.purpose) == (f"user:{clinician.pk}", "permit", "ETREAT")
    assert flagged.reason.startswith("sealed:")  # erasure takes the words with the key
    reason = access_log_text(patient_id=flagged.patient_ref, text=flagged.reason)
    assert reason == "unconscious patient in the emergency room"
    assert AccessLogEntry.objects.filter(purpose="ETREAT", outcome="deny").count() == 2


def test_a_search_by_someone_without_a_grant_is_denied_and_logged_with_its_query(alice_record, other_clinician):
    with pytest.raises(ResourceNotFound):
        resource_search(
            caller=Caller(actor=other_clinician, purpose="TREAT"),
            patient=alice_record,
            resource_type="Observation",
            query="code=http://loinc.org|8480-6",
        )
    entry = AccessLogEntry.objects.get(action="records.search")
    query = access_log_text(patient_id=entry.patient_ref, text=entry.query)
    assert (entry.outcome, query, entry.resource_ids) == ("deny", "code=http://loinc.org|8480-6", [])
