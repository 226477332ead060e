"""The API's read fetches the caller's live grants inside the statement that locates the row.

That expression and the decision's own query (consent.pdp.live_grants) must select exactly the
same grants: same grantee, the located row's patient only, recorded, same purpose, in force now.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

import orjson
import pytest
from django.utils import timezone

from consent.models import Grant, GrantStatus
from consent.pdp import grantee_id_expression, grants_from_expression, live_grants, live_grants_expression
from records.demo import generate_patient_bundle
from records.models import Resource
from records.selectors import RowExtra, stored_version_locate
from records.services import fhir_ingest

pytestmark = pytest.mark.django_db


def _grant(patient, grantee, **overrides: object) -> Grant:  # type: ignore[no-untyped-def]
    # Mirror rows written directly: what is under test is which rows the two queries select.
    now = timezone.now()
    fields: dict[str, object] = {
        "id": "0x" + secrets.token_hex(32),
        "patient": patient,
        "grantee": grantee,
        "resource_types": ["Observation"],
        "actions": ["read"],
        "categories": [],
        "purpose": "TREAT",
        "not_before": now - timedelta(days=1),
        "not_after": now + timedelta(days=1),
        "patient_address": "0x" + "11" * 20,
        "grantee_address": "0x" + "22" * 20,
        "salt": "0x" + "33" * 32,
        "commitment_salt": "0x" + "44" * 32,
        "scope_commitment": "0x" + "55" * 32,
        "signature": "0x" + "66" * 65,
        "status": GrantStatus.RECORDED,
    }
    fields.update(overrides)
    return Grant.objects.create(**fields)


def _first_observation(patient) -> Resource:  # type: ignore[no-untyped-def]
    fhir_ingest(payload=orjson.dumps(generate_patient_bundle(3, years=1)), actor="system:test", patient=patient)
    return Resource.objects.filter(patient=patient, resource_type="Observation").order_by("pk").first()


def test_the_in_statement_grants_are_exactly_the_decisions_grants(patient, other_patient, clinician, other_clinician):
    now = timezone.now()
    wide = _grant(patient, clinician, resource_types=["*"], actions=["read", "write"])
    narrow = _grant(patient, clinician, categories=["http://example.org|vital-signs"])
    # None of these may be selected for (clinician, patient, TREAT, now):
    _grant(patient, clinician, status=GrantStatus.REVOKED)
    _grant(patient, clinician, status=GrantStatus.PENDING)
    _grant(patient, clinician, purpose="CAREMGT")
    _grant(patient, clinician, not_before=now - timedelta(days=3), not_after=now - timedelta(days=2))
    _grant(patient, clinician, not_before=now + timedelta(days=1), not_after=now + timedelta(days=2))
    _grant(patient, other_clinician)
    _grant(other_patient, clinician)
    observation = _first_observation(patient)

    expected = live_grants(grantee_id=clinician.pk, patient_id=patient.pk, purpose="TREAT", at=now)
    located = stored_version_locate(
        resource_type="Observation",
        resource_id=observation.fhir_id,
        extras=[live_grants_expression(grantee=grantee_id_expression(clinician.pk), at=now)],
    )
    assert located is not None
    found = grants_from_expression(located.extras[0], purpose="TREAT")
    assert sorted(found) == sorted(expected)
    assert {row[0] for row in found} == {wide.pk, narrow.pk}
    by_id = {row[0]: row for row in found}
    assert by_id[wide.pk] == (wide.pk, ["*"], ["read", "write"], [])
    assert by_id[narrow.pk][3] == ["http://example.org|vital-signs"]


def test_no_live_grant_gives_an_empty_list_and_the_row_still_comes_back(patient, clinician):
    observation = _first_observation(patient)
    located = stored_version_locate(
        resource_type="Observation",
        resource_id=observation.fhir_id,
        extras=[live_grants_expression(grantee=grantee_id_expression(clinician.pk), at=timezone.now())],
    )
    assert located is not None
    assert located.stored.fhir_id == observation.fhir_id
    assert grants_from_expression(located.extras[0], purpose="TREAT") == []


def test_without_an_expression_the_row_carries_nothing_extra(patient):
    observation = _first_observation(patient)
    located = stored_version_locate(resource_type="Observation", resource_id=observation.fhir_id)
    assert located is not None
    assert located.extras == ()


def _user_named(user) -> RowExtra:  # type: ignore[no-untyped-def]
    # The grantee as an expression, the way the API names it (its bearer token's user).
    return RowExtra(sql="(SELECT u.id FROM accounts_user u WHERE u.username = %s)", params=(user.username,))


def test_grants_of_a_grantee_named_by_an_expression_are_the_decisions_grants_for_each_purpose(
    patient, other_patient, clinician, other_clinician
):
    now = timezone.now()
    _grant(patient, clinician, resource_types=["*"], actions=["read", "write"])
    _grant(patient, clinician, categories=["http://example.org|vital-signs"])
    _grant(patient, clinician, purpose="CAREMGT")
    # Never selected: another state, another time, another grantee, another patient.
    _grant(patient, clinician, status=GrantStatus.REVOKED)
    _grant(patient, clinician, status=GrantStatus.PENDING)
    _grant(patient, clinician, not_before=now - timedelta(days=3), not_after=now - timedelta(days=2))
    _grant(patient, clinician, not_before=now + timedelta(days=1), not_after=now + timedelta(days=2))
    _grant(patient, other_clinician)
    _grant(other_patient, clinician)
    observation = _first_observation(patient)

    located = stored_version_locate(
        resource_type="Observation",
        resource_id=observation.fhir_id,
        extras=[_user_named(clinician), live_grants_expression(grantee=_user_named(clinician), at=now)],
    )

    assert located is not None
    assert located.extras[0] == clinician.pk
    for purpose in ("TREAT", "CAREMGT", "HRESCH"):
        expected = live_grants(grantee_id=clinician.pk, patient_id=patient.pk, purpose=purpose, at=now)
        assert sorted(grants_from_expression(located.extras[1], purpose=purpose)) == sorted(expected), purpose
    assert len(grants_from_expression(located.extras[1], purpose="TREAT")) == 2


def test_an_expression_naming_nobody_selects_no_grants(patient, clinician):
    _grant(patient, clinician)
    observation = _first_observation(patient)
    nobody = RowExtra(sql="(SELECT u.id FROM accounts_user u WHERE u.username = %s)", params=("nobody",))

    located = stored_version_locate(
        resource_type="Observation",
        resource_id=observation.fhir_id,
        extras=[live_grants_expression(grantee=nobody, at=timezone.now())],
    )

    assert located is not None
    assert grants_from_expression(located.extras[0], purpose="TREAT") == []
