"""No query parameter or form value makes a portal page answer 500: a friendly 400 or 404 page instead.

Each case here answered 500 once (issue 10, section 5): a superscript two is a "digit" to
str.isdigit() but not to int(), twenty digits overflow the database's integer, and a grant
starting in year 9999 stepped past the end of the calendar when its length was added.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent.models import Grant
from consent.services import InvalidGrant
from tests.patient_device import device_of, grant_issue_signed
from tests.portal.conftest import sign_and_post

pytestmark = pytest.mark.django_db

HUGE = "99999999999999999999"
ROBUST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _friendly(response, status: int) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == status
    assert response["Content-Type"].startswith("text/html")
    return response.content.decode()  # type: ignore[no-any-return]


@pytest.mark.parametrize("version", ["²", "\u0661", "1.5", "-1", "0", "x"])
def test_a_version_that_is_not_a_whole_number_is_a_friendly_400(alice, an_observation, version) -> None:
    response = alice.get(f"/record/Observation/{an_observation.fhir_id}/", {"version": version})

    assert "The version must be a whole number from 1." in _friendly(response, 400)


@pytest.mark.parametrize("version", [HUGE, str(2**31), "999999"])
def test_a_version_that_does_not_exist_however_large_is_a_friendly_404(alice, an_observation, version) -> None:
    response = alice.get(f"/record/Observation/{an_observation.fhir_id}/", {"version": version})

    assert "There is nothing here for you." in _friendly(response, 404)


def test_version_one_still_shows_the_first_version(alice, an_observation) -> None:
    response = alice.get(f"/record/Observation/{an_observation.fhir_id}/", {"version": "1"})

    assert response.status_code == 200
    assert response.context["version"] == 1


@pytest.mark.parametrize("number", ["²", "0", "-3", "two", "1e3"])
def test_an_access_log_page_that_is_not_a_whole_number_is_a_friendly_400(alice, alice_record, number) -> None:
    response = alice.get("/access/", {"page": number})

    assert "The page must be a whole number from 1." in _friendly(response, 400)


@pytest.mark.parametrize("number", [HUGE, "1000001"])
def test_an_access_log_page_past_any_real_log_is_a_friendly_404(alice, alice_record, number) -> None:
    response = alice.get("/access/", {"page": number})

    assert "There is nothing here for you." in _friendly(response, 404)


def test_an_access_log_page_past_the_end_is_an_empty_page(alice, alice_record) -> None:
    response = alice.get("/access/", {"page": "1000"})

    assert response.status_code == 200
    assert response.context["rows"] == []
    assert response.context["page"] == 1000


def test_an_access_proof_of_an_entry_id_past_the_databases_integers_is_a_friendly_404(alice, alice_record) -> None:
    response = alice.get(f"/access/{HUGE}/")

    assert "There is nothing here for you." in _friendly(response, 404)


@given(version=st.text(max_size=24), page=st.text(max_size=24))
@ROBUST
def test_no_version_or_page_value_makes_a_server_error(alice, an_observation, version: str, page: str) -> None:
    # Client(raise_request_exception=False) would hide the error's type; the default client raises it here.
    record = alice.get(f"/record/Observation/{an_observation.fhir_id}/", {"version": version})
    log = alice.get("/access/", {"page": page, "mine": page})

    assert record.status_code in (200, 400, 404)
    assert log.status_code in (200, 400, 404)


# --- A grant's window at the ends of the calendar -----------------------------------------------


def _grant_form(clinician, **overrides: object) -> dict[str, object]:  # type: ignore[no-untyped-def]
    data: dict[str, object] = {
        "grantee": clinician.pk,
        "what": ["measurements"],
        "purpose": "TREAT",
        "actions": ["read"],
        "duration": "30d",
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    "overrides",
    [
        {"starts": "9999-12-31T00:00"},
        {"starts": "9999-12-31T23:59", "duration": "1y"},
        {"starts": "9999-01-01T00:00", "duration": "custom", "ends": "9999-06-01T00:00"},
    ],
)
def test_a_grant_starting_in_year_9999_is_refused_on_the_form(alice, alice_record, clinician, deployed, overrides):
    response = alice.post("/sharing/new/what/", _grant_form(clinician, **overrides))

    assert "Access can start at most five years from now." in _friendly(response, 400)
    assert not Grant.objects.exists()


def test_a_grant_ending_on_the_last_day_of_the_calendar_is_refused_on_the_form(
    alice, alice_record, clinician, deployed
):
    response = alice.post("/sharing/new/what/", _grant_form(clinician, duration="custom", ends="9999-12-31T23:59"))

    assert "a grant lasts at most five years" in _friendly(response, 400)
    assert not Grant.objects.exists()


def test_the_grant_service_refuses_a_start_more_than_five_years_ahead(alice_record, patient_user, clinician, deployed):
    start = datetime(9999, 1, 1, tzinfo=UTC)

    with pytest.raises(InvalidGrant, match="at most five years from now"):
        grant_issue_signed(
            patient=alice_record,
            by=patient_user,
            grantee=clinician,
            resource_types=["Observation"],
            actions=["read"],
            purpose="TREAT",
            not_before=start,
            not_after=start + timedelta(days=30),
        )
    assert not Grant.objects.exists()


def test_a_grant_starting_next_year_is_still_signed(alice, alice_record, clinician, deployed) -> None:
    starts = (timezone.now() + timedelta(days=365)).strftime("%Y-%m-%dT%H:%M")

    device_of(alice_record)  # her key, created in her browser
    response = alice.post("/sharing/new/what/", _grant_form(clinician, starts=starts))
    assert response.status_code == 302
    response = sign_and_post(alice, "/sharing/new/review/", alice_record)

    assert response.status_code == 302
    assert Grant.objects.get().not_before.year == timezone.now().year + 1


# Any minute of the calendar, its first and last ones always among those tried.
MINUTES = st.one_of(
    st.sampled_from([datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59)]),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59)),
)


@given(starts=MINUTES, duration=st.sampled_from(["24h", "7d", "30d", "90d", "1y", "custom"]), ends=MINUTES)
@ROBUST
def test_no_start_or_end_on_the_sharing_form_makes_a_server_error(
    patient_user, alice_record, clinician, deployed, starts: datetime, duration: str, ends: datetime
) -> None:
    client = Client()
    client.force_login(patient_user)
    data = _grant_form(clinician, duration=duration)
    data["ends"] = f"{ends.year:04d}-{ends:%m-%dT%H:%M}"
    data["starts"] = f"{starts.year:04d}-{starts:%m-%dT%H:%M}"

    response = client.post("/sharing/new/what/", data)

    assert response.status_code in (302, 400)


PAGES = ["/dashboard/", "/record/", "/sharing/", "/access/", "/ai/", "/account/security/", "/record/timeline/all/"]
NAMES = st.sampled_from(["version", "page", "mine", "type", "granted", "revoked", "next", "setup", "view"])


@given(url=st.sampled_from(PAGES), query=st.dictionaries(NAMES, st.text(max_size=24), max_size=3))
@ROBUST
def test_no_query_on_any_patient_page_makes_a_server_error(alice, alice_record, url: str, query: dict) -> None:  # type: ignore[type-arg]
    response = alice.get(url, query)

    assert response.status_code in (200, 302, 400, 404), (url, query)


@pytest.fixture
def shared_with_carol(issue_grant):  # type: ignore[no-untyped-def]
    """The record Alice shares with Carol (granted once for every example of a test)."""
    return issue_grant().patient_id


@given(kind=st.text(max_size=24))
@ROBUST
def test_no_type_on_the_clinicians_patient_page_makes_a_server_error(carol, shared_with_carol, kind: str) -> None:
    response = carol.get(f"/clinician/patients/{shared_with_carol}/", {"type": kind})

    assert response.status_code in (200, 404)
