"""`seed_demo --research`: an approved demo study with 25 joined generated patients, a released table,
and an invitation for demo.patient."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from consent.models import KeyKind
from consent.services import grant_typed_data
from ledger import signing
from portal.management.commands.seed_demo import phrase_path
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


def test_each_cohort_member_signed_her_join_with_a_key_registered_for_her_and_kept_nowhere(deployed) -> None:
    call_command("seed_demo", "--research", stdout=StringIO())

    joins = Participation.objects.select_related("grant", "patient").filter(study__title=DEMO_TITLE)
    assert joins.count() == 25
    for joined in joins:
        record = joined.patient
        assert (record.wallet_ciphertext, record.key_registrations.get().kind) == (None, KeyKind.CREATED)
        signer = signing.recover_signer(grant_typed_data(joined.grant), signing.signature_parse(joined.grant.signature))
        assert signer == record.wallet_address
    # Only the demo patient's phrase is written (she signs in); cohort members never do.
    assert [p.name for p in phrase_path().parent.iterdir()] == [phrase_path().name]
