"""SMART Backend Services: a client authenticates at the token endpoint with a JWT it signed (private_key_jwt).

The client posts `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`
and `client_assertion`, a JWT signed RS384 or ES384 with a key from the JWKS it registered
(inline, or at its `jwks_uri`, fetched over HTTPS from a public address resolved once, with a timeout and
a size limit). Checked:
`iss` = `sub` = the client id, `aud` = this token endpoint, `exp` in the future and at most
five minutes ahead, `jti` never seen before from this client (kept until the assertion expires).

A backend client acts for its owner, the clinician who registered it: its `system/` scopes
reach exactly what that clinician's grants allow (the gate decides each read), never more.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from jwcrypto import jwk, jws
from jwcrypto.common import JWException
from oauth2_provider.models import Application

from api.pinned_fetch import FetchRefused, fetch_pinned
from api.scopes import scope_parse
from api.smart_models import AuthMethod, ClientAssertionUse, ClientProfile

logger = logging.getLogger(__name__)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ("RS384", "ES384")
_KEY_TYPES = {"RS384": "RSA", "ES384": "EC"}
MAX_ASSERTION = 16_384
MAX_LIFETIME = timedelta(minutes=5)
CLOCK_SKEW = timedelta(seconds=60)


class JwksUnavailable(Exception):
    """A client's jwks_uri could not be fetched, or what it served is not a key set within bounds."""


def jwks_fetch(url: str) -> dict[str, Any]:
    """The key set at a client's jwks_uri: HTTPS (HTTP only where settings allow it), a public host (private ones
    only where settings allow it), resolved once and connected to at that address (api.pinned_fetch), bounded in
    time and size."""
    try:
        body = fetch_pinned(
            url,
            timeout=settings.SMART_JWKS_FETCH_TIMEOUT,
            limit=settings.SMART_JWKS_MAX_BYTES,
            http_allowed=settings.SMART_JWKS_URI_HTTP_ALLOWED,
            private_allowed=settings.SMART_JWKS_URI_PRIVATE_ALLOWED,
        )
    except FetchRefused as exc:
        raise JwksUnavailable(f"jwks_uri: {exc}") from exc
    return jwks_parse(body)


def jwks_parse(raw: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """A JWKS holding public keys only; JwksUnavailable for anything else."""
    try:
        document = raw if isinstance(raw, dict) else json.loads(raw)
        keys = jwk.JWKSet.from_json(json.dumps(document))
    except (ValueError, TypeError, JWException) as exc:
        raise JwksUnavailable("not a JSON Web Key Set") from exc
    if not isinstance(document, dict) or not document.get("keys"):
        raise JwksUnavailable("the key set has no keys")
    if any(key.get("kty") not in ("RSA", "EC") or key.has_private for key in keys["keys"]):
        # A symmetric (oct) key is a shared secret, and a private key was never the server's to hold.
        raise JwksUnavailable("a registered key set must hold public RSA or EC keys only")
    return document


def _client_keys(profile: ClientProfile) -> jwk.JWKSet:
    document = profile.jwks if profile.jwks else jwks_fetch(profile.jwks_uri) if profile.jwks_uri else None
    if document is None:
        raise JwksUnavailable("the client registered no keys")
    return jwk.JWKSet.from_json(json.dumps(jwks_parse(document)))


def _verification_key(keys: jwk.JWKSet, header: dict[str, Any]) -> jwk.JWK | None:
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        return None
    kid = header.get("kid")
    candidates = [k for k in keys["keys"] if k.get("kty") == _KEY_TYPES[alg] and (kid is None or k.get("kid") == kid)]
    if kid is None and len(candidates) != 1:
        return None  # without a kid, only an unambiguous key will do
    return candidates[0] if candidates else None


def _unverified(assertion: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    token = jws.JWS()
    try:
        token.deserialize(assertion)
        header = token.jose_header
        payload = json.loads(token.objects["payload"])
    except (JWException, ValueError, KeyError, TypeError):
        return None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        return None
    return header, payload


def _claims_valid(claims: dict[str, Any], *, client_id: str, token_endpoint: str) -> datetime | None:
    """The assertion's expiry when its claims hold; None otherwise."""
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        return None
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if token_endpoint.rstrip("/") not in {str(a).rstrip("/") for a in audiences if isinstance(a, str)}:
        return None
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return None
    expires = datetime.fromtimestamp(exp, tz=UTC)
    now = timezone.now()
    if expires <= now - CLOCK_SKEW or expires > now + MAX_LIFETIME + CLOCK_SKEW:
        return None
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= 255:
        return None
    return expires


def _first_use(application: Application, jti: str, expires: datetime) -> bool:
    """Record the jti; False when this client used it before (a replay)."""
    ClientAssertionUse.objects.filter(expires__lt=timezone.now() - CLOCK_SKEW).delete()
    try:
        with transaction.atomic():
            # The unique (application, jti) constraint decides a race between two uses of one assertion.
            ClientAssertionUse.objects.create(application=application, jti=jti, expires=expires)
    except IntegrityError:
        return False
    return True


def client_assertion_authenticate(*, assertion: str, token_endpoint: str) -> Application | None:
    """The client this assertion authenticates, or None (the token endpoint answers invalid_client).

    Nothing of the assertion is logged: only why it was refused, by a short reason.
    """
    if len(assertion) > MAX_ASSERTION:
        return None
    found = _unverified(assertion)
    if found is None:
        return _refused("malformed")
    header, claims = found
    client_id = claims.get("iss")
    if not isinstance(client_id, str):
        return _refused("no-issuer")
    profile = (
        ClientProfile.objects.select_related("application__user")
        .filter(application__client_id=client_id, auth_method=AuthMethod.PRIVATE_KEY_JWT)
        .first()
    )
    if profile is None:
        return _refused("unknown-client")
    try:
        key = _verification_key(_client_keys(profile), header)
    except JwksUnavailable as exc:
        logger.info("client assertion refused: %s", exc)
        return None
    if key is None:
        return _refused("no-key")
    verifier = jws.JWS()
    try:
        verifier.deserialize(assertion)
        verifier.allowed_algs = list(ALGORITHMS)
        verifier.verify(key, alg=header["alg"])
    except (JWException, ValueError):
        return _refused("bad-signature")
    expires = _claims_valid(claims, client_id=client_id, token_endpoint=token_endpoint)
    if expires is None:
        return _refused("claims")
    if not _first_use(profile.application, claims["jti"], expires):
        return _refused("replayed")
    return profile.application


def _refused(reason: str) -> Application | None:
    """None, the refusal, logged by a short reason (never the assertion)."""
    logger.info("client assertion refused: %s", reason)
    return None


def scopes_allowed(*, client: Any, scopes: list[str]) -> bool:
    """Whether a client may ask for these scopes: within what it registered, when it registered any."""
    profile = ClientProfile.objects.filter(application=client).only("scope").first() if client is not None else None
    if profile is None or not profile.scope.strip():
        return True
    registered = profile.scope.split()
    return all(_within(scope, registered) for scope in scopes)


def _within(asked: str, registered: list[str]) -> bool:
    if asked in registered:
        return True
    try:
        wanted = scope_parse(asked)
    except ValueError:
        return False
    if wanted is None:
        return False
    for scope in registered:
        try:
            have = scope_parse(scope)
        except ValueError:
            continue
        if (
            have is not None
            and have.context == wanted.context
            and have.resource_type in ("*", wanted.resource_type)
            and set(wanted.permissions) <= set(have.permissions)
        ):
            return True
    return False
