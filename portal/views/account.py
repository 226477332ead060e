"""Account recovery and upkeep: a password reset by e-mail, a password change, and the terms and privacy page.

Django's own views, with the portal's templates. The reset e-mail's link is built on
HEALTHLEDGER_PUBLIC_URL, never on the request's Host header, and the answer to a reset request
is the same whether or not the address belongs to an account.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse_lazy
from django.views.decorators.http import require_GET

_RESET_EMAIL = {"public_url": settings.HEALTHLEDGER_PUBLIC_URL.rstrip("/")}

password_reset = auth_views.PasswordResetView.as_view(
    template_name="portal/account/password_reset.html",
    email_template_name="portal/account/password_reset_email.txt",
    subject_template_name="portal/account/password_reset_subject.txt",
    success_url=reverse_lazy("portal:password_reset_sent"),
    extra_email_context=_RESET_EMAIL,
)
password_reset_sent = auth_views.PasswordResetDoneView.as_view(template_name="portal/account/password_reset_sent.html")
password_reset_confirm = auth_views.PasswordResetConfirmView.as_view(
    template_name="portal/account/password_reset_confirm.html",
    success_url=reverse_lazy("portal:password_reset_complete"),
)
password_reset_complete = auth_views.PasswordResetCompleteView.as_view(
    template_name="portal/account/password_reset_complete.html"
)
password_change = auth_views.PasswordChangeView.as_view(
    template_name="portal/account/password_change.html", success_url=reverse_lazy("portal:password_change_done")
)
password_change_done = auth_views.PasswordChangeDoneView.as_view(
    template_name="portal/account/password_change_done.html"
)


@require_GET
def privacy(request: HttpRequest) -> HttpResponse:
    """Terms and privacy in plain words: what is stored where, who can read it, what is on the chain."""
    return render(request, "portal/account/privacy.html")
