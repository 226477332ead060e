"""`seed_demo --research`: an approved demo study with 25 joined generated patients, a released table,
and an invitation for demo.patient."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from records.models import Patient
from research.demo import DEMO_TITLE
from research.models import Participation, Release, Study
from research.selectors import invitations

pytestmark = pytest.mark.django_db


def test_the_research_demo_has_a_recruiting_study_with_25_participants_and_a_released_table(deployed) -> None:
    out = StringIO()
    call_command("seed_demo", "--research", stdout=out)

    study = Study.objects.get(title=DEMO_TITLE)
    assert study.state == "recruiting"
    assert Participation.objects.filter(study=study, grant__status="recorded").count() == 25
    release = Release.objects.get(run__study=study)
    assert release.status == "released"
    assert release.run.result["mean"] is not None
    demo_patient = Patient.objects.get(user__username="demo.patient")
    assert invitations(patient=demo_patient) == [study]
    assert "research demo: study recruiting, 25 joined (25 recorded on chain), run succeeded, release released" in (
        out.getvalue()
    )

    call_command("seed_demo", "--research", stdout=StringIO())
    assert Study.objects.filter(title=DEMO_TITLE).count() == 1
