"""The data steward's review of break-glass episodes: each one listed, and marked reviewed with a note."""

from __future__ import annotations

import uuid

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from consent.break_glass import break_glass_episodes, break_glass_review
from consent.models import BreakGlassEpisode
from healthledger.errors import ResourceNotFound
from portal.forms import BreakGlassReviewForm
from portal.views.common import steward_page


def _form(episode_id: object, data: object = None) -> BreakGlassReviewForm:
    # One form per episode on the page: its own field ids.
    return BreakGlassReviewForm(data, auto_id=f"review-{episode_id}-%s")  # type: ignore[arg-type]


def _page(request: HttpRequest, *, failed: BreakGlassReviewForm | None = None, failed_id: str = "") -> HttpResponse:
    rows = [
        (episode, failed if failed is not None and str(episode.pk) == failed_id else _form(episode.pk))
        for episode in break_glass_episodes()
    ]
    context = {"rows": rows, "nav": "steward"}
    return render(request, "portal/steward_break_glass.html", context, status=400 if failed else 200)


@require_GET
@steward_page
def break_glass_list(request: HttpRequest) -> HttpResponse:
    return _page(request)


@require_POST
@steward_page
def break_glass_review_view(request: HttpRequest, episode_id: uuid.UUID) -> HttpResponse:
    episode = BreakGlassEpisode.objects.filter(pk=episode_id).first()
    if episode is None:
        raise ResourceNotFound("no such episode")
    form = _form(episode.pk, request.POST)
    if not form.is_valid():
        return _page(request, failed=form, failed_id=str(episode.pk))
    break_glass_review(episode=episode, by=request.user, note=form.cleaned_data["note"])  # type: ignore[arg-type]
    return redirect(f"/steward/break-glass/#episode-{episode.pk}")
