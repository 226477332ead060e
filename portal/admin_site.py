"""The Django admin, hardened: a second factor is required and failed sign-ins are throttled as in the portal.

It is django-otp's OTPAdminSite (a session counts only once its TOTP code was checked), with
its own sign-in form: username, password and the code of the staff member's authenticator
app, all checked at once, and every failure counted per username and client address by the
same service the portal's sign-in uses. Past LOGIN_FAILURE_LIMIT the sign-in answers 429
without checking anything. Installed as the default site by portal.apps.HealthLedgerAdminConfig,
so every `@admin.register` lands here.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django_otp.admin import OTPAdminSite

from portal.services import login_failure_record, login_failures_clear, login_is_throttled, totp_confirmed_device
from portal.views.common import client_address

THROTTLED = "throttled"


class StaffLoginForm(AdminAuthenticationForm):
    """Password and TOTP code of an active staff account; any failure is one counted failure, told the same way."""

    otp_token = forms.RegexField(
        regex=r"^\d{6}$",
        label="Code from your authenticator app",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "maxlength": "6"}),
    )
    error_messages = {
        **AdminAuthenticationForm.error_messages,
        # One message for a wrong password, a wrong code, no authenticator and no staff rights alike.
        "invalid_login": "Enter the username, password and authenticator code of a staff account.",
        THROTTLED: "Too many failed sign-ins. Try again in %(minutes)s minutes.",
    }

    def clean(self) -> dict[str, Any]:
        username = str(self.data.get("username", ""))[:150]
        address = client_address(self.request) if self.request is not None else None
        if login_is_throttled(username=username, address=address):
            minutes = max(1, settings.LOGIN_FAILURE_WINDOW_SECONDS // 60)
            raise ValidationError(self.error_messages[THROTTLED], code=THROTTLED, params={"minutes": minutes})
        try:
            cleaned = super().clean()  # the password, an active account, is_staff
            self._second_factor_check()
        except ValidationError:
            login_failure_record(username=username, address=address)
            raise
        login_failures_clear(username=username, address=address)
        return cleaned

    def _second_factor_check(self) -> None:
        user = self.get_user()
        device = totp_confirmed_device(user=user) if user is not None else None
        token = self.cleaned_data.get("otp_token")
        if device is None or not token or not device.verify_token(token):
            raise self.get_invalid_login_error()
        # django-otp's user_logged_in handler marks the new session verified with this device.
        user.otp_device = device  # type: ignore[union-attr,attr-defined]

    def confirm_login_allowed(self, user: Any) -> None:
        if not (user.is_active and user.is_staff):
            raise self.get_invalid_login_error()


class HealthLedgerAdminSite(OTPAdminSite):
    """The admin at /admin/: staff only, each session verified by a TOTP code, sign-in throttled."""

    login_form = StaffLoginForm
    login_template = "portal/admin/login.html"
    site_header = "HealthLedger administration"
    site_title = "HealthLedger admin"

    def __init__(self, name: str = "admin") -> None:
        # OTPAdminSite names itself "otpadmin"; the URLs and templates here reverse "admin:".
        super().__init__(name)

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        response = super().login(request, extra_context)
        form = getattr(response, "context_data", {}).get("form")
        if form is not None and form.has_error("__all__", THROTTLED):
            response.status_code = 429
        return response
