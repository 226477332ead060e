"""Sign up, sign in (password, then the TOTP code when the user set one up), sign out, second-factor setup.

Failed attempts are counted per username and client address (portal.services); past
LOGIN_FAILURE_LIMIT within LOGIN_FAILURE_WINDOW_SECONDS, sign-in answers 429 without
checking the password, so guessing costs the window, not a CPU.
"""

from __future__ import annotations

import base64

import qrcode
import qrcode.image.svg
from django.conf import settings
from django.contrib.auth import authenticate, login
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods
from django_otp import login as otp_login

from accounts.models import Role, User
from portal.forms import LoginForm, RecoveryCodeForm, SignupForm, TokenForm
from portal.recovery import recovery_code_use, recovery_codes_issue, recovery_codes_left, recovery_codes_remove
from portal.services import (
    login_failure_record,
    login_failures_clear,
    login_is_throttled,
    patient_signup_confirm,
    patient_signup_request,
    totp_confirmed_device,
    totp_device_begin,
    totp_device_confirm,
    totp_devices_remove,
)
from portal.views.common import client_address

PENDING_USER = "portal_pending_user"
PENDING_NEXT = "portal_pending_next"


def _safe_next(request: HttpRequest, candidate: str | None) -> str:
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return str(settings.LOGIN_REDIRECT_URL)


def _throttled(request: HttpRequest, template: str, form: object) -> HttpResponse:
    minutes = max(1, settings.LOGIN_FAILURE_WINDOW_SECONDS // 60)
    context = {"form": form, "throttled": True, "minutes": minutes}
    return render(request, template, context, status=429)


def home(request: HttpRequest) -> HttpResponse:
    """Where "/" leads: each role to its own page."""
    if not request.user.is_authenticated:
        return redirect("portal:login")
    role = request.user.role  # type: ignore[union-attr]
    if role == Role.PATIENT:
        return redirect("portal:dashboard")
    if role == Role.CLINICIAN:
        return redirect("portal:clinician")
    return render(request, "portal/other_role.html")


@never_cache
@sensitive_post_parameters("password1", "password2")
@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    """Ask for an account; the answer is "check your e-mail" whether or not the name is taken."""
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        patient_signup_request(
            username=form.cleaned_data["username"],
            password=form.cleaned_data["password1"],
            first_name=form.cleaned_data["first_name"],
            last_name=form.cleaned_data["last_name"],
            email=form.cleaned_data["email"],
            site_url=request.build_absolute_uri("/"),
        )
        return redirect("portal:signup_sent")
    return render(request, "portal/signup.html", {"form": form}, status=400 if form.errors else 200)


@require_http_methods(["GET"])
def signup_sent(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/signup_sent.html")


@never_cache
@require_http_methods(["GET"])
def signup_confirm(request: HttpRequest, uidb64: str, token: str) -> HttpResponse:
    """The link from the sign-up e-mail: activates the account, then the patient signs in."""
    user = patient_signup_confirm(uidb64=uidb64, token=token)
    return render(request, "portal/signup_confirm.html", {"activated": user is not None}, status=200 if user else 400)


@never_cache
@sensitive_post_parameters("password")
@require_http_methods(["GET", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    form = LoginForm(request.POST or None)
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if request.method != "POST":
        return render(request, "portal/login.html", {"form": form, "next": next_url})
    address = client_address(request)
    username = request.POST.get("username", "")[:150]
    if login_is_throttled(username=username, address=address):
        return _throttled(request, "portal/login.html", form)
    user = (
        authenticate(request, username=username, password=request.POST.get("password", "")) if form.is_valid() else None
    )
    if user is None:
        login_failure_record(username=username, address=address)
        context = {"form": form, "failed": True, "next": next_url}
        return render(request, "portal/login.html", context, status=401)
    if totp_confirmed_device(user=user) is not None:
        # Password right; the session holds who is half signed in until the code is checked.
        request.session[PENDING_USER] = user.pk
        request.session[PENDING_NEXT] = next_url
        return redirect("portal:login_verify")
    login_failures_clear(username=username, address=address)
    login(request, user)
    return redirect(_safe_next(request, next_url))


@never_cache
@require_http_methods(["GET", "POST"])
def login_verify(request: HttpRequest) -> HttpResponse:
    """The second step for a user with an authenticator app: the six-digit code."""
    pending = request.session.get(PENDING_USER)
    user = User.objects.filter(pk=pending, is_active=True).first() if isinstance(pending, int) else None
    device = totp_confirmed_device(user=user) if user is not None else None
    if user is None or device is None:
        return redirect("portal:login")
    using_code = "recovery_code" in request.POST
    form = TokenForm(request.POST if request.method == "POST" and not using_code else None)
    recovery = RecoveryCodeForm(request.POST if using_code else None)
    context = {"form": form, "recovery": recovery}
    if request.method != "POST":
        return render(request, "portal/login_verify.html", context)
    address = client_address(request)
    if login_is_throttled(username=user.username, address=address):
        return _throttled(request, "portal/login_verify.html", form)
    if using_code:
        # A recovery code stands in for the app's code once; it goes through the same failure counter.
        passed = recovery.is_valid() and recovery_code_use(user=user, code=recovery.cleaned_data["recovery_code"])
    else:
        passed = form.is_valid() and device.verify_token(form.cleaned_data["token"])
    if not passed:
        login_failure_record(username=user.username, address=address)
        context["failed"] = True
        return render(request, "portal/login_verify.html", context, status=401)
    next_url = request.session.pop(PENDING_NEXT, "")
    request.session.pop(PENDING_USER, None)
    login_failures_clear(username=user.username, address=address)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    otp_login(request, device)
    return redirect(_safe_next(request, next_url))


def _qr_svg(url: str) -> str:
    image = qrcode.make(url, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    return image.to_string(encoding="unicode")  # type: ignore[no-any-return]


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def security(request: HttpRequest) -> HttpResponse:
    """Turn the TOTP second factor on (scan, then confirm a code) or off (with the password)."""
    user: User = request.user  # type: ignore[assignment]
    if totp_confirmed_device(user=user) is not None and not request.user.is_verified():  # type: ignore[union-attr]
        return redirect("portal:login")
    context: dict[str, object] = {"enabled": totp_confirmed_device(user=user) is not None}
    context["codes_left"] = recovery_codes_left(user=user)
    action = request.POST.get("action", "")
    if request.method == "POST" and action == "remove":
        if not user.check_password(request.POST.get("password", "")):
            context["remove_failed"] = True
            return render(request, "portal/security.html", context, status=400)
        totp_devices_remove(user=user)
        recovery_codes_remove(user=user)
        return redirect("portal:security")
    if request.method == "POST" and action == "recovery-codes" and context["enabled"]:
        # Shown in this one answer and never again: only their digests are kept.
        context["recovery_codes"] = recovery_codes_issue(user=user)
    if request.method == "POST" and action == "confirm":
        form = TokenForm(request.POST)
        if form.is_valid():
            device = totp_device_confirm(user=user, token=form.cleaned_data["token"])
            if device is not None:
                otp_login(request, device)
                return redirect("portal:security")
        context["confirm_failed"] = True
    if not context["enabled"] and (request.GET.get("setup") or action == "confirm"):
        device = totp_device_begin(user=user)
        context["qr_svg"] = _qr_svg(device.config_url)
        context["secret"] = base64.b32encode(device.bin_key).decode("ascii")
        context["form"] = TokenForm()
    return render(request, "portal/security.html", context, status=400 if context.get("confirm_failed") else 200)
