"""Numbers a patient can trust: blood pressure by component code, converted units, reading precision, H/L flags."""

from __future__ import annotations

import orjson
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from portal.plain import plain_resource
from records.models import Resource

pytestmark = pytest.mark.django_db

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
PATIENT = "urn:uuid:6f1f0d9e-0000-4000-8000-000000000001"


def _coding(code: str, display: str) -> dict[str, object]:
    return {"coding": [{"system": LOINC, "code": code, "display": display}]}


def _qty(value: float, code: str) -> dict[str, object]:
    return {"value": value, "unit": code, "system": UCUM, "code": code}


def _obs(n: int, code: str, display: str, when: str, **rest: object) -> dict[str, object]:
    return {
        "fullUrl": f"urn:uuid:6f1f0d9e-0000-4000-8000-{n:012d}",
        "resource": {
            "resourceType": "Observation",
            "id": f"6f1f0d9e-0000-4000-8000-{n:012d}",
            "status": "final",
            "code": _coding(code, display),
            "subject": {"reference": PATIENT},
            "effectiveDateTime": when,
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "laboratory",
                        }
                    ]
                }
            ],
            **rest,
        },
        "request": {"method": "POST", "url": "Observation"},
    }


# Synthea writes the diastolic component first.
SYNTHEA_BP = {
    "component": [
        {"code": _coding("8462-4", "Diastolic Blood Pressure"), "valueQuantity": _qty(73.3, "mm[Hg]")},
        {"code": _coding("8480-6", "Systolic Blood Pressure"), "valueQuantity": _qty(106.5, "mm[Hg]")},
    ]
}
BUNDLE = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [
        {
            "fullUrl": PATIENT,
            "resource": {
                "resourceType": "Patient",
                "id": "6f1f0d9e-0000-4000-8000-000000000001",
                "gender": "female",
                "birthDate": "1970-05-01",
            },
            "request": {"method": "POST", "url": "Patient"},
        },
        _obs(2, "85354-9", "Blood pressure panel", "2020-03-01T10:00:00Z", **SYNTHEA_BP),
        _obs(3, "29463-7", "Body Weight", "2020-03-01T10:00:00Z", valueQuantity=_qty(185, "[lb_av]")),
        _obs(4, "29463-7", "Body Weight", "2020-04-01T10:00:00Z", valueQuantity=_qty(180, "cm")),
        _obs(
            5,
            "2093-3",
            "Total Cholesterol",
            "2020-03-01T10:00:00Z",
            valueQuantity=_qty(5.9, "mmol/L"),
            referenceRange=[{"high": _qty(6.2, "mmol/L")}],
        ),
        _obs(6, "2093-3", "Total Cholesterol", "2021-03-01T10:00:00Z", valueQuantity=_qty(212.4, "mg/dL")),
        _obs(7, "2339-0", "Glucose", "2020-03-01T10:00:00Z", valueQuantity=_qty(83.28015376396887, "mg/dL")),
    ],
}


@pytest.fixture
def numbers_record(alice, patient):  # type: ignore[no-untyped-def]
    response = alice.post(
        "/record/import/",
        {"file": SimpleUploadedFile("numbers.json", orjson.dumps(BUNDLE))},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200, response.content.decode()
    return patient


def _id(patient, display: str, when: str) -> str:  # type: ignore[no-untyped-def]
    from consent import gate

    for row in Resource.objects.filter(patient=patient, resource_type="Observation"):
        body = orjson.loads(
            gate.resource_read(
                caller=_caller(patient), patient=patient, resource_type="Observation", resource_id=row.fhir_id
            )
        )
        if body["code"]["coding"][0]["display"] == display and body["effectiveDateTime"].startswith(when):
            return str(row.fhir_id)
    raise AssertionError(display)


def _caller(patient):  # type: ignore[no-untyped-def]
    from consent import gate

    return gate.Caller(actor=patient.user)


def test_synthea_order_blood_pressure_reads_systolic_over_diastolic() -> None:
    resource = {"resourceType": "Observation", "code": _coding("85354-9", "Blood pressure panel"), **SYNTHEA_BP}

    plain = plain_resource(resource)

    assert plain.value == "107/73 mmHg"
    assert plain.exact == "106.5/73.3 mmHg"


def test_the_demo_order_blood_pressure_reads_the_same_way() -> None:
    components = list(reversed(SYNTHEA_BP["component"]))
    resource = {"resourceType": "Observation", "code": _coding("85354-9", "Blood pressure"), "component": components}

    assert plain_resource(resource).value == "107/73 mmHg"


def test_a_long_decimal_reads_at_three_figures_with_the_exact_value_kept() -> None:
    resource = {"resourceType": "Observation", **BUNDLE["entry"][6]["resource"]}  # type: ignore[index]

    plain = plain_resource(resource)

    assert (plain.value, plain.exact) == ("83.3 mg/dL", "83.28015376396887 mg/dL")


def test_a_stored_ai_result_is_titled_by_its_model_and_shows_its_value() -> None:
    resource = {
        "resourceType": "RiskAssessment",
        "status": "final",
        "method": {"coding": [{"code": "egfr", "display": "Kidney function (eGFR)"}], "text": "egfr 1.0.0"},
        "code": {"coding": [{"system": LOINC, "code": "98979-8"}]},
        "prediction": [{"qualitativeRisk": {"text": "mildly decreased"}, "rationale": "eGFR 75 from creatinine"}],
    }

    plain = plain_resource(resource)

    assert (plain.title, plain.value) == ("Kidney function (eGFR)", "mildly decreased")
    assert ("What it found", "eGFR 75 from creatinine") in plain.facts


def test_the_blood_pressure_chart_takes_components_by_code(alice, numbers_record) -> None:
    data = alice.get("/record/charts/blood-pressure.json").json()

    systolic, diastolic = data["series"]
    assert [p["y"] for p in systolic["points"]] == [107]
    assert [p["y"] for p in diastolic["points"]] == [73]


def test_a_weight_in_pounds_is_charted_in_kilograms_and_a_length_is_refused(alice, numbers_record) -> None:
    data = alice.get("/record/charts/weight.json").json()

    (weight,) = data["series"]
    assert [(p["y"], p["recorded"]) for p in weight["points"]] == [(83.9, "185 [lb_av]")]
    assert [(r["recorded"], r["reason"]) for r in weight["refused"]] == [("180 cm", "cm cannot be converted to kg")]


def test_cholesterol_is_flagged_against_its_own_range_else_the_usual_one(alice, numbers_record) -> None:
    data = alice.get("/record/charts/cholesterol.json").json()

    total = data["series"][0]
    first, second = total["points"]
    assert (first["y"], first["flag"], first["own_range"]) == (228, "", True)  # 5.9 mmol/L is under the lab's 6.2
    assert round(first["high"]) == 240
    assert (second["y"], second["flag"], second["high"], second["own_range"]) == (212, "H", 200, False)


def test_the_timeline_and_the_resource_page_show_the_flag_and_the_exact_value(alice, numbers_record) -> None:
    timeline = alice.get("/record/timeline/laboratory/", HTTP_HX_REQUEST="true").content.decode()
    detail = alice.get(f"/record/Observation/{_id(numbers_record, 'Glucose', '2020')}/").content.decode()

    assert "212 mg/dL" in timeline
    assert 'class="flag flag-H"' in timeline
    assert "83.3 mg/dL" in detail
    assert "83.28015376396887 mg/dL, as recorded" in detail


def test_the_import_answer_replaces_the_empty_record_summary(alice, patient) -> None:
    response = alice.post(
        "/record/import/",
        {"file": SimpleUploadedFile("numbers.json", orjson.dumps(BUNDLE))},
        HTTP_HX_REQUEST="true",
    )

    body = response.content.decode()
    assert 'id="record-summary" hx-swap-oob="true"' in body
    assert "6 Observation" in body


def test_a_clinician_without_a_grant_gets_no_chart(mallory, numbers_record) -> None:
    response = mallory.get("/record/charts/weight.json")

    assert response.status_code in (302, 403, 404)
    assert b"lb_av" not in response.content


def test_a_status_code_reads_in_words_not_as_a_code() -> None:
    condition = {
        "resourceType": "Condition",
        "code": {"text": "Hypertension"},
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
    }
    stopped = {"resourceType": "MedicationRequest", "status": "on-hold", "medicationCodeableConcept": {"text": "X"}}

    assert plain_resource(condition).value == "Active"
    assert plain_resource(stopped).value == "On hold"


def test_a_real_synthea_record_reads_systolic_above_diastolic_at_every_visit(alice, patient, synthea_files) -> None:
    response = alice.post(
        "/record/import/",
        {"file": SimpleUploadedFile("synthea.json", synthea_files[1].read_bytes()), "source": "Synthea"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200

    data = alice.get("/record/charts/blood-pressure.json").json()

    systolic = {p["ref"]: p["y"] for p in data["series"][0]["points"]}
    diastolic = {p["ref"]: p["y"] for p in data["series"][1]["points"]}
    assert systolic
    assert systolic.keys() == diastolic.keys()
    assert all(systolic[ref] > diastolic[ref] for ref in systolic)
    timeline = alice.get("/record/timeline/vital-signs/", HTTP_HX_REQUEST="true").content.decode()
    for ref, upper in list(systolic.items())[:3]:
        assert f"{upper:.0f}/{diastolic[ref]:.0f} mmHg" in timeline
