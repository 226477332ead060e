"""TOTP recovery codes: ten single-use codes, shown once, stored as keyed digests, for a lost authenticator app.

A code has 50 random bits (10 characters of Crockford-style base32). The digest is an HMAC
under a key derived from SECRET_KEY and bound to the user, so a copy of the database alone
cannot be searched for codes, and a code of one account is nothing in another.
"""

from __future__ import annotations

import secrets

from django.db import transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from accounts.models import User
from portal.models import RecoveryCode

CODE_COUNT = 10
ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ0123456789"  # no I, L, O, U: nothing to misread
CODE_LENGTH = 10


def _normalised(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def _digest(user_id: int, code: str) -> str:
    return salted_hmac(
        "healthledger.portal.recovery-code", f"{user_id}:{_normalised(code)}", algorithm="sha256"
    ).hexdigest()


def _shown(code: str) -> str:
    return f"{code[:5]}-{code[5:]}"


def recovery_codes_issue(*, user: User) -> list[str]:
    """A new set of codes for `user`, replacing any earlier set; returned the only time they exist in clear."""
    codes = ["".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH)) for _ in range(CODE_COUNT)]
    with transaction.atomic():
        RecoveryCode.objects.filter(user=user).delete()
        RecoveryCode.objects.bulk_create(RecoveryCode(user=user, digest=_digest(user.pk, c)) for c in codes)
    return [_shown(c) for c in codes]


def recovery_code_use(*, user: User, code: str) -> bool:
    """Spend one unused code of `user`: True once per code, False for anything else."""
    if len(_normalised(code)) != CODE_LENGTH:
        return False
    with transaction.atomic():
        # Locked so the same code sent twice at once signs in once.
        row = (
            RecoveryCode.objects.select_for_update()
            .filter(user=user, digest=_digest(user.pk, code), used_at__isnull=True)
            .first()
        )
        if row is None:
            return False
        row.used_at = timezone.now()
        row.save(update_fields=["used_at"])
    return True


def recovery_codes_left(*, user: User) -> int:
    return RecoveryCode.objects.filter(user=user, used_at__isnull=True).count()


def recovery_codes_remove(*, user: User) -> int:
    """Delete every code of `user` (the second factor was turned off); returns how many."""
    return RecoveryCode.objects.filter(user=user).delete()[0]
