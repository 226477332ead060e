"""Portal forms: they parse and check input only; the views hand the result to one service."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.contrib.auth.forms import UserCreationForm
from django.utils import timezone

from accounts.models import User
from consent.purposes import Action, Purpose
from consent.services import MAX_GRANT_LEAD
from portal.selectors import clinicians_directory
from portal.share_terms import PURPOSE_WORDS, SHARE_KINDS, share_terms

DURATIONS = {
    "24h": ("24 hours", timedelta(hours=24)),
    "7d": ("7 days", timedelta(days=7)),
    "30d": ("30 days", timedelta(days=30)),
    "90d": ("90 days", timedelta(days=90)),
    "1y": ("1 year", timedelta(days=365)),
}
CONFIRM_ERASE = "erase my record"


class LoginForm(forms.Form):
    username = forms.CharField(max_length=150, widget=forms.TextInput(attrs={"autocomplete": "username"}))
    password = forms.CharField(strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}))


class SignupForm(UserCreationForm):  # type: ignore[type-arg]
    """Sign-up input. Never says whether a username is taken: that goes by e-mail (patient_signup_request)."""

    first_name = forms.CharField(max_length=150, required=False, label="First name")
    last_name = forms.CharField(max_length=150, required=False, label="Last name")
    email = forms.EmailField(label="Email", help_text="We e-mail you a link to finish creating your account.")

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "first_name", "last_name", "email")

    def clean_username(self) -> str:
        # UserCreationForm answers "A user with that username already exists": a free test of who has an account.
        return str(self.cleaned_data["username"])

    def validate_unique(self) -> None:
        """No uniqueness errors on the page, for the same reason; the service handles a taken name."""


class TokenForm(forms.Form):
    token = forms.RegexField(
        regex=r"^\d{6}$",
        label="Six-digit code from your authenticator app",
        error_messages={"invalid": "Enter the six digits your app shows."},
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "maxlength": "6"}),
    )


class RecoveryCodeForm(forms.Form):
    recovery_code = forms.CharField(
        label="A recovery code",
        max_length=20,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )


class ImportForm(forms.Form):
    file = forms.FileField(
        label="FHIR file: a Bundle or resource (.json), or one resource per line (.ndjson)",
        widget=forms.ClearableFileInput(attrs={"accept": ".json,.ndjson,.jsonl,application/fhir+json"}),
    )
    source = forms.CharField(
        label="Where is this file from?",
        help_text="The hospital, doctor or app that gave it to you, e.g. Riverside Clinic. Use the same name "
        "each time you import from them, so a newer file updates the older one.",
        max_length=64,
        required=False,
        widget=forms.TextInput(attrs={"list": "import-sources", "autocomplete": "off"}),
    )
    skip_bad = forms.BooleanField(required=False)


def _time_zone_choices() -> list[tuple[str, str]]:
    import zoneinfo

    names = sorted(zoneinfo.available_timezones())
    return [("", "The time zone of the device I am using"), *[(n, n.replace("_", " ")) for n in names]]


class TimeZoneForm(forms.Form):
    time_zone = forms.ChoiceField(
        label="Show times in",
        choices=_time_zone_choices,
        required=False,
        help_text="Every date and time in the portal is shown in this time zone.",
    )


def _optional_kinds() -> list[tuple[str, str]]:
    from accounts.services import NOTIFICATION_KINDS

    return [(kind, info.label) for kind, info in NOTIFICATION_KINDS.items() if not info.mandatory]


class NotificationEmailForm(forms.Form):
    email_kinds = forms.MultipleChoiceField(
        label="E-mail me when",
        choices=_optional_kinds,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="You always see every notification here, and an emergency (break-glass) opening of your record is "
        "always e-mailed. The e-mails say only that there is something to see: never what, or about whom.",
    )


class ShareForm(forms.Form):
    """The second step of sharing: with whom (chosen in the directory, carried here), what, why, how long.

    Dates are read in the time zone the page is shown in (portal.views.common.in_local_time).
    """

    grantee = forms.ModelChoiceField(queryset=clinicians_directory(), widget=forms.HiddenInput)
    what = forms.MultipleChoiceField(
        choices=[(kind.key, kind.label) for kind in SHARE_KINDS],
        widget=forms.CheckboxSelectMultiple,
        label="What to share",
        error_messages={"required": "Choose at least one kind of record."},
    )
    purpose = forms.ChoiceField(
        choices=[(p.value, f"{PURPOSE_WORDS[p][0].upper()}{PURPOSE_WORDS[p][1:]}") for p in PURPOSE_WORDS],
        initial=Purpose.TREAT.value,
        label="Why",
    )
    actions = forms.MultipleChoiceField(
        # run-analysis is granted only by joining a study (research.services.participation_join).
        choices=[
            (Action.READ.value, "See these records"),
            (Action.WRITE.value, "Add new records to them (for example a new measurement)"),
            (Action.RUN_MODEL.value, "Run an AI model on them for you"),
        ],
        widget=forms.CheckboxSelectMultiple,
        initial=[Action.READ.value],
        label="What they may do",
        error_messages={"required": "Choose what they may do."},
    )
    duration = forms.ChoiceField(
        choices=[(k, v[0]) for k, v in DURATIONS.items()] + [("custom", "Until a date I choose")],
        initial="30d",
        widget=forms.RadioSelect,
        label="For how long",
    )
    starts = forms.DateTimeField(
        required=False,
        label="Starts (leave empty for now)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    ends = forms.DateTimeField(
        required=False,
        label="Ends (only for “Until a date I choose”)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        data["grant_types"], data["grant_categories"] = share_terms(data.get("what") or [])
        now = timezone.now()
        starts: datetime = data.get("starts") or now
        if starts - now > MAX_GRANT_LEAD:
            # Said before the end is worked out: a start near the calendar's end plus a length has no date.
            self.add_error("starts", "Access can start at most five years from now.")
            return data
        data["not_before"] = starts
        if data.get("duration") == "custom":
            if not data.get("ends"):
                self.add_error("ends", "Choose when access ends.")
            data["not_after"] = data.get("ends")
        elif data.get("duration") in DURATIONS:
            data["not_after"] = starts + DURATIONS[data["duration"]][1]
        ends = data.get("not_after")
        if ends is not None and ends <= now:
            self.add_error("ends", "That end is already in the past.")
        elif ends is not None and ends <= starts:
            self.add_error("ends", "Access must end after it starts.")
        return data


class EraseForm(forms.Form):
    confirmation = forms.CharField(
        label=f"Type “{CONFIRM_ERASE}” to confirm", widget=forms.TextInput(attrs={"autocomplete": "off"})
    )
    password = forms.CharField(
        strip=False, label="Your password", widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_confirmation(self) -> str:
        value = str(self.cleaned_data["confirmation"]).strip().lower()
        if value != CONFIRM_ERASE:
            raise forms.ValidationError(f"Type exactly: {CONFIRM_ERASE}")
        return value

    def clean_password(self) -> str:
        value = str(self.cleaned_data["password"])
        if not self.user.check_password(value):
            raise forms.ValidationError("That is not your password.")
        return value


class BreakGlassReviewForm(forms.Form):
    note = forms.CharField(
        label="Review note",
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="What you checked, and what you found.",
    )
