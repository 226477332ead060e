"""The admin's views of accounts and second factors, and the trail they leave.

An administrator can edit a patient's account or set her password; either could be used to
sign in as her. So each such change is written to her access log as the administrator's, in
the change's own transaction (portal.services.account_admin_change_log), and she sees it
next to every other access. The admin never shows a TOTP seed: django-otp's own device admin
(which shows the seed and a QR code of it) is replaced by a list that can only remove a
device, which is logged the same way.

Here, not in accounts/admin.py, because logging reaches into audit, a layer above accounts.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import ClinicianProfile, User
from portal.models import SealedTOTPDevice
from portal.services import ADMIN_CHANGE, ADMIN_PASSWORD, ADMIN_SECOND_FACTOR_REMOVE, account_admin_change_log

if admin.site.is_registered(TOTPDevice):
    admin.site.unregister(TOTPDevice)


@admin.register(User)
class HealthLedgerUserAdmin(UserAdmin):  # type: ignore[type-arg]
    list_display = ("username", "email", "role", "is_staff")
    list_filter = ("role", "is_staff")
    fieldsets = (*(UserAdmin.fieldsets or ()), ("Role", {"fields": ("role",)}))

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> HttpResponse:
        # The new password and its access-log entry commit together, or neither does.
        with transaction.atomic():
            return super().user_change_password(request, id, form_url)  # type: ignore[no-any-return]

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        # Django's change view and password view both end here, inside their transaction.
        match = request.resolver_match
        password_view = match is not None and (match.url_name or "").endswith("_password_change")
        account_admin_change_log(
            admin=request.user,  # type: ignore[arg-type]
            user=obj,
            action=ADMIN_PASSWORD if password_view else ADMIN_CHANGE,
        )
        return super().log_change(request, obj, message)


@admin.register(ClinicianProfile)
class ClinicianProfileAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """What patients see of a clinician in the sharing directory: title, organisation, specialty."""

    list_display = ("user", "title", "organisation", "specialty")
    search_fields = ("user__username", "user__last_name", "organisation", "specialty")
    raw_id_fields = ("user",)


@admin.register(SealedTOTPDevice)
class AuthenticatorAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Who has an authenticator app, and removing one (a lost phone); never its seed."""

    list_display = ("user", "name", "confirmed", "created_at", "last_used_at")
    list_filter = ("confirmed",)
    search_fields = ("user__username",)
    fields = ("user", "name", "confirmed", "created_at", "last_used_at")
    readonly_fields = fields
    actions = None  # no bulk delete: each removal is one logged change

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # enrolment is the user's own, in the portal, where the seed is shown once to them

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def log_deletions(self, request: HttpRequest, queryset: Any) -> Any:
        # Called by the delete view inside its transaction, before the device goes.
        for device in queryset:
            account_admin_change_log(admin=request.user, user=device.user, action=ADMIN_SECOND_FACTOR_REMOVE)  # type: ignore[arg-type]
        return super().log_deletions(request, queryset)

    def get_queryset(self, request: HttpRequest) -> QuerySet[SealedTOTPDevice]:
        return super().get_queryset(request).select_related("user")
