"""A patient who holds her own key joins and withdraws by signing in her browser (eth_account stands in)."""

from __future__ import annotations

import secrets

import pytest
from django.test import Client

from consent.models import Grant, GrantStatus
from research.models import Participation
from tests.patient_device import legacy_server_key
from tests.portal.test_keys import _page_json, _sign, _take_key
from tests.research.conftest import relay_all

pytestmark = pytest.mark.django_db


def _alice(make_patient):  # type: ignore[no-untyped-def]
    patient = make_patient()
    legacy_server_key(patient)  # a record from before self-custody: she takes her key first
    patient.user.set_password("correct horse battery staple")
    patient.user.save()
    client = Client()
    client.force_login(patient.user)
    return patient, client


def test_with_her_own_key_she_signs_the_study_grant_and_her_signature_joins(recruiting_study, make_patient):
    study = recruiting_study()
    patient, alice = _alice(make_patient)
    key = _take_key(alice)

    review = alice.post(f"/research/studies/{study.pk}/join/")
    typed = _page_json(review.content.decode(), "typed-data")
    wrong = alice.post(f"/research/studies/{study.pk}/join/", {"signature": _sign(typed, secrets.token_bytes(32))})
    done = alice.post(f"/research/studies/{study.pk}/join/", {"signature": _sign(typed, key)})

    assert review.status_code == 200
    assert "Sign and join" in review.content.decode()
    assert wrong.status_code == 400
    assert done.status_code == 302
    joined = Participation.objects.get(study=study, patient=patient)
    assert joined.grant.signature == _sign(typed, key)
    assert (joined.grant.purpose, joined.grant.actions) == ("HRESCH", ["run-analysis"])

    relay_all()
    page = alice.get(f"/research/studies/{study.pk}/withdraw/").content.decode()
    revoke = _page_json(page, "typed-data")
    unsigned = alice.post(f"/research/studies/{study.pk}/withdraw/")
    signed = alice.post(f"/research/studies/{study.pk}/withdraw/", {"signature": _sign(revoke, key)})

    assert unsigned.status_code == 400
    assert signed.status_code == 302
    assert Grant.objects.get(pk=joined.grant_id).status == GrantStatus.REVOKED
