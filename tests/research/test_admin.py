"""The admin shows studies and their decisions, read-only, and no participant."""

from __future__ import annotations

import pytest
from django.contrib import admin

from research.models import Participation, RunMember, Study
from research.services import study_create, study_transition
from tests.portal.test_admin import admin_client, admin_user  # noqa: F401
from tests.research.conftest import spec

pytestmark = pytest.mark.django_db


def test_the_admin_lists_studies_with_their_decisions_and_never_participants(researcher, steward, admin_client):  # noqa: F811
    study = study_create(by=researcher, spec=spec())
    study_transition(study=study, to="submitted", by=researcher)
    client = admin_client

    page = client.get(f"/admin/research/study/{study.pk}/change/")

    assert page.status_code == 200
    assert "submitted" in page.content.decode()
    assert admin.site.is_registered(Study)
    assert not admin.site.is_registered(Participation)
    assert not admin.site.is_registered(RunMember)
