"""Feasibility counts: only findable patients, obfuscated, the same answer again, a quota per researcher."""

from __future__ import annotations

import pytest
from django.test import Client

from audit.models import AccessLogEntry
from research import disclosure
from research.feasibility import FEW, NOISE_BOUND, FeasibilityRefused, feasibility_count, noise, obfuscate
from research.preferences import preference_set
from tests.api.conftest import bearer
from tests.research.conftest import DIABETES

pytestmark = pytest.mark.django_db
DIABETICS = {"conditions": [DIABETES]}


def _findable(make_patient, n: int, **kwargs):  # type: ignore[no-untyped-def]
    out = []
    for _ in range(n):
        patient = make_patient(**kwargs)
        preference_set(patient=patient, by=patient.user, duo=["GRU"], findable=True, on_change="ask")
        out.append(patient)
    return out


def test_the_noise_is_bounded_and_fixed_per_query():
    draws = {noise(f"sha256:{i:064x}") for i in range(400)}

    assert draws == set(range(-NOISE_BOUND, NOISE_BOUND + 1))
    assert noise("sha256:" + "ab" * 32) == noise("sha256:" + "ab" * 32)


@pytest.mark.parametrize("true_count", [0, 1, 9, 10])
def test_ten_or_fewer_is_all_that_is_said_of_a_small_count(true_count):
    assert obfuscate(true_count, "sha256:" + "00" * 32, disclosure.Thresholds()) == FEW


def test_a_large_count_is_rounded_to_five_within_the_noise():
    for i in range(50):
        shown = obfuscate(100, f"sha256:{i:064x}", disclosure.Thresholds())
        assert shown % 5 == 0
        assert 95 <= shown <= 105


def test_only_patients_who_let_studies_find_them_are_counted(make_patient, researcher):
    _findable(make_patient, 12, diabetic=True)
    hidden = [make_patient(diabetic=True) for _ in range(6)]  # not findable: never counted
    _findable(make_patient, 3, diabetic=False)

    answer = feasibility_count(by=researcher, eligibility=DIABETICS)

    expected = obfuscate(12, answer["query_hash"], disclosure.Thresholds())
    assert answer["count"] == expected
    assert len(hidden) == 6
    assert not AccessLogEntry.objects.filter(action="research.feasibility").exclude(patient_ref=None).exists()


def test_sex_and_age_criteria_come_from_the_blind_index(make_patient, researcher):
    _findable(make_patient, 11, sex="female", birth="1980-03-01")
    _findable(make_patient, 11, sex="male", birth="1980-03-01")
    _findable(make_patient, 11, sex="female", birth="1940-03-01")

    women_40s = feasibility_count(by=researcher, eligibility={"sex": ["female"], "age": [40, 49]})
    men = feasibility_count(by=researcher, eligibility={"sex": ["male"]})
    old = feasibility_count(by=researcher, eligibility={"age": [90, 120]})

    assert women_40s["count"] == obfuscate(11, women_40s["query_hash"], disclosure.Thresholds())
    assert men["count"] == obfuscate(11, men["query_hash"], disclosure.Thresholds())
    assert old["count"] == FEW


def test_a_repeated_query_gets_the_same_answer_and_costs_no_quota(make_patient, researcher, settings):
    settings.RESEARCH_FEASIBILITY_QUOTA = 2
    _findable(make_patient, 11, diabetic=True)
    first = feasibility_count(by=researcher, eligibility=DIABETICS)
    _findable(make_patient, 4, diabetic=True)  # the true count moves; the repeated answer does not

    again = feasibility_count(by=researcher, eligibility={"conditions": [DIABETES, DIABETES]})
    other = feasibility_count(by=researcher, eligibility={"sex": ["female"]})

    assert (again["count"], again["repeated"]) == (first["count"], True)
    assert other["quota_left"] == 0
    with pytest.raises(FeasibilityRefused) as refused:
        feasibility_count(by=researcher, eligibility={"sex": ["male"]})
    assert refused.value.status == 429


def test_the_api_answers_researchers_within_quota_and_refuses_patients(
    make_patient, researcher, patient_user, token_for, settings
):
    settings.RESEARCH_FEASIBILITY_QUOTA = 1
    token = token_for(researcher, scope="research.read")

    def ask(tok: str, eligibility: object):  # type: ignore[no-untyped-def]
        return Client().post(
            "/api/research/feasibility", {"eligibility": eligibility}, content_type="application/json", **bearer(tok)
        )

    ok = ask(token, DIABETICS)
    bad = ask(token, {"sex": ["robot"]})
    over = ask(token, {"sex": ["female"]})
    patient = ask(token_for(patient_user, scope="research.read"), DIABETICS)

    assert (ok.status_code, ok.json()["count"]) == (200, FEW)
    assert bad.status_code == 400
    assert over.status_code == 429
    assert patient.status_code == 403
