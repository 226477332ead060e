"""What the API keeps beside django-oauth-toolkit's tables: the purpose of use bound to a token."""

from __future__ import annotations

from django.db import models
from oauth2_provider.models import AccessToken

from consent.purposes import Purpose


class TokenPurpose(models.Model):
    """The HL7 PurposeOfUse a client named when it asked for the token (`purpose_of_use` token parameter).

    A token bound to a purpose can only be used for it; a request naming another purpose
    (X-Purpose-Of-Use) is refused. Deleted with its token (revocation deletes the token).
    """

    access_token = models.OneToOneField(AccessToken, on_delete=models.CASCADE, primary_key=True, related_name="+")
    purpose = models.CharField(max_length=16, choices=Purpose.choices)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(purpose__in=[p.value for p in Purpose]), name="api_tokenpurpose_purpose_valid"
            )
        ]

    def __str__(self) -> str:
        return f"token {self.access_token_id} for {self.purpose}"


class TokenRequestFailure(models.Model):
    """One failed request at the token endpoint (a wrong client secret, an unknown client, a bad code) from an address.

    Counted per client address across every client id, in the database so every web worker sees
    the same count: guessing secrets, or which client ids exist, costs the window (api.services).
    """

    id = models.BigAutoField(primary_key=True)
    address = models.GenericIPAddressField(null=True, blank=True)
    at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["address", "at"], name="api_tokenfailure_lookup")]

    def __str__(self) -> str:
        return f"failed token request at {self.at:%Y-%m-%d %H:%M}"


from api.bulk_models import ExportJob, ExportSegment  # noqa: E402,F401  (bulk export tables, declared in their own module)
from api.smart_models import (  # noqa: E402,F401  (SMART launch, client registration and assertion tables)
    ClientAssertionUse,
    ClientProfile,
    EhrLaunch,
    InitialAccessToken,
    LaunchGrant,
    TokenLaunch,
)
