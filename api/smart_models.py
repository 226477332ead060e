"""SMART App Launch and Backend Services tables: launch context, client registration, assertion replay.

Declared here, imported by api/models.py, so the SMART tables sit apart from the token's purpose.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from oauth2_provider.models import AccessToken, Application, Grant

from records.models import Patient


class LaunchGrant(models.Model):
    """The patient picked at authorization (`launch/patient`), kept with the authorization code until it is used."""

    grant = models.OneToOneField(Grant, on_delete=models.CASCADE, primary_key=True, related_name="+")
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="+")

    def __str__(self) -> str:
        return f"launch context of code {self.grant_id}"


class EhrLaunch(models.Model):
    """An EHR launch: a clinician opened an app from a patient's page. The opaque `launch` id the app carries to
    the authorization endpoint is bound to that clinician, app and patient; it is used once, and soon (api.ehr_launch).
    """

    id = models.BigAutoField(primary_key=True)
    checksum = models.CharField(max_length=64, unique=True)  # SHA-256 of the launch id; the id is never stored
    clinician = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="+")
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="+")
    expires = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["expires"], name="api_ehrlaunch_expires")]

    def __str__(self) -> str:
        return f"EHR launch {self.pk}"


class TokenLaunch(models.Model):
    """The patient in context of a token: its `patient/` scopes reach this record and no other.

    Deleted with its token; a refreshed token inherits it (api.oauth.SmartValidator).
    """

    access_token = models.OneToOneField(AccessToken, on_delete=models.CASCADE, primary_key=True, related_name="+")
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="+")

    def __str__(self) -> str:
        return f"launch context of token {self.access_token_id}"


class AuthMethod(models.TextChoices):
    CLIENT_SECRET = "client_secret_basic", "Client secret"
    PRIVATE_KEY_JWT = "private_key_jwt", "Signed JWT (private_key_jwt)"
    NONE = "none", "None (public client, PKCE)"


class ClientProfile(models.Model):
    """What a SMART client registered beside django-oauth-toolkit's Application: its keys and how it authenticates.

    A client using `private_key_jwt` authenticates with a JWT signed by a key in `jwks` (registered
    inline) or at `jwks_uri` (fetched on use, bounded in time and size: api.backend_services).
    """

    application = models.OneToOneField(Application, on_delete=models.CASCADE, primary_key=True, related_name="smart")
    auth_method = models.CharField(max_length=32, choices=AuthMethod.choices, default=AuthMethod.CLIENT_SECRET)
    jwks = models.JSONField(null=True, blank=True)
    jwks_uri = models.URLField(max_length=2000, blank=True, default="")
    # Where an EHR launch sends the browser (with `iss` and `launch`): the app's launch URL; empty: no EHR launch.
    launch_uri = models.URLField(max_length=2000, blank=True, default="")
    # The scopes the client may ask for; empty: any SMART scope (the gate decides either way).
    scope = models.TextField(blank=True, default="")
    registered_via = models.CharField(max_length=16, default="portal")  # portal | dcr
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"SMART client {self.application_id}"


class ClientAssertionUse(models.Model):
    """A client assertion's `jti`, kept until the assertion expires: a second use of it is refused."""

    id = models.BigAutoField(primary_key=True)
    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="+")
    jti = models.CharField(max_length=255)
    expires = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["application", "jti"], name="api_assertion_jti_once")]
        indexes = [models.Index(fields=["expires"], name="api_assertion_expires")]

    def __str__(self) -> str:
        return f"assertion of client {self.application_id}"


class InitialAccessToken(models.Model):
    """An RFC 7591 initial access token a clinician made: it registers one client, owned by that clinician."""

    id = models.BigAutoField(primary_key=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    checksum = models.CharField(max_length=64, unique=True)  # SHA-256 of the token; the token is never stored
    expires = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"initial access token {self.pk}"
