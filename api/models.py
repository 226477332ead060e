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
