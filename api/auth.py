"""Bearer-token authentication for the FHIR API and the JSON API: one indexed query per request.

django-oauth-toolkit's own resource-server check loads the token, its application and
its user through the ORM with several queries. Here one cached SQL statement finds the
token by its SHA-256 (DOT's indexed `token_checksum`; with RFC 9700 storage on, the
token itself is never stored) together with the acting user and the bound purpose. Nothing
is cached between requests: a revoked token (DOT deletes the row) or a deactivated user is
refused by the very next request.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import orjson
from django.db import connection
from django.http import HttpRequest
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from oauth2_provider.models import AccessToken, Application
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from accounts.models import User
from api.models import TokenLaunch, TokenPurpose
from api.outcomes import NotAuthenticated
from api.scopes import ScopeSet
from healthledger.lib.db import prepared_cursor
from records.selectors import RowExtra


@dataclass(frozen=True)
class TokenContext:
    """Who the token acts for, what its scopes allow, and the purpose bound to it ("" when none)."""

    user: User
    scopes: ScopeSet
    token_id: int
    application_id: int | None
    purpose: str
    client_credentials: bool
    expires: Any
    # A person signed in and approved this token (the authorization-code flow, or a refresh of one).
    interactive: bool = False
    # The SMART launch patient (a record's id): the token reaches that record only. None: no patient context.
    patient_context: Any = None


# In the model's field order: Model.from_db assigns values by position among the concrete fields.
_USER_FIELDS = ("id", "username", "is_active", "role")
# The longest bearer token looked up at all; anything longer is refused without a query.
MAX_TOKEN = 512
_COLUMNS = (
    "t.id, t.expires, t.scope, t.application_id, t.user_id IS NULL, u.id, u.username, u.role, u.is_active, p.purpose,"
    " a.authorization_grant_type,"
    " l.patient_id"
)
_SQL: dict[str, str] = {}
_IDENTITY_SQL: dict[str, str] = {}
_ACTOR_SQL: dict[str, str] = {}


def _tables() -> tuple[str, str, str, str]:
    quote = connection.ops.quote_name
    token, app, user, purpose = (quote(m._meta.db_table) for m in (AccessToken, Application, User, TokenPurpose))
    return token, app, user, purpose


def _launch_table() -> str:
    return connection.ops.quote_name(TokenLaunch._meta.db_table)


def _from_clause() -> str:
    token, app, user, purpose = _tables()
    # A client-credentials token has no user of its own: it acts as the application's owner.
    return (
        f" FROM {token} t LEFT JOIN {app} a ON a.id = t.application_id"
        f" JOIN {user} u ON u.id = COALESCE(t.user_id, a.user_id)"
        f" LEFT JOIN {purpose} p ON p.access_token_id = t.id"
        f" LEFT JOIN {_launch_table()} l ON l.access_token_id = t.id"
        " WHERE t.token_checksum = %s"
    )


def _lookup_sql() -> str:
    sql = _SQL.get(connection.vendor)
    if sql is None:
        sql = _SQL[connection.vendor] = f"SELECT {_COLUMNS}{_from_clause()}"
    return sql


def _checksum(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def bearer_token(request: HttpRequest) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def token_context(token: str) -> TokenContext | None:
    """The live token's context, or None when it is unknown, expired, revoked or its user inactive."""
    if len(token) > MAX_TOKEN:
        return None
    with prepared_cursor() as cursor:
        cursor.execute(_lookup_sql(), [_checksum(token)])
        row = cursor.fetchone()
    return _context(row)


def token_identity(token: str) -> tuple[RowExtra, RowExtra]:
    """The token's row and its acting user's id as scalar SQL expressions, for another statement to carry.

    The API's read asks for them inside the statement that finds the resource (consent.gate's
    DeferredCaller): same lookup, same index, no round trip of its own. Turn the first value into
    a context with token_context_from_identity. The token must be at most MAX_TOKEN long.
    """
    if len(token) > MAX_TOKEN:
        raise ValueError("bearer token too long to look up")
    vendor = connection.vendor  # once: each `connection.x` is a lookup of this thread's connection
    identity = _IDENTITY_SQL.get(vendor)
    if identity is None:
        array = "json_build_array" if vendor == "postgresql" else "json_array"
        cast = "::text" if vendor == "postgresql" else ""
        identity = _IDENTITY_SQL[vendor] = f"(SELECT {array}({_COLUMNS}){cast}{_from_clause()})"
    actor = _ACTOR_SQL.get(vendor)
    if actor is None:
        token_table, app, _, _ = _tables()
        actor = _ACTOR_SQL[vendor] = (
            f"(SELECT COALESCE(t.user_id, a.user_id) FROM {token_table} t"  # noqa: S608 (model tables)
            f" LEFT JOIN {app} a ON a.id = t.application_id WHERE t.token_checksum = %s)"
        )
    checksum = _checksum(token)
    return RowExtra(sql=identity, params=(checksum,)), RowExtra(sql=actor, params=(checksum,))


def token_context_from_identity(value: object) -> TokenContext | None:
    """The context a token_identity expression's value describes; None as token_context would say it."""
    if value is None:
        return None
    row = orjson.loads(value) if isinstance(value, str | bytes) else value
    return _context(row)  # type: ignore[arg-type]


def _context(row: Sequence[Any] | None) -> TokenContext | None:
    if row is None:
        return None
    token_id, expires, scope, application_id, no_user, uid, username, role, is_active, purpose, grant_type, launch = row
    if not is_active:
        return None
    if isinstance(expires, str):  # SQLite hands raw cursors text; JSON carries ISO 8601
        expires = parse_datetime(expires)
    if expires is None or timezone.now() >= _aware(expires):
        return None
    user = User.from_db(connection.alias, list(_USER_FIELDS), [uid, username, bool(is_active), role])
    return TokenContext(
        user=user,
        scopes=ScopeSet.from_string(scope or ""),
        token_id=token_id,
        application_id=application_id,
        purpose=purpose or "",
        client_credentials=bool(no_user),
        expires=_aware(expires),
        interactive=not no_user and grant_type == Application.GRANT_AUTHORIZATION_CODE,
        patient_context=_uuid(launch),
    )


def _uuid(value: Any) -> uuid.UUID | None:
    if value is None or isinstance(value, uuid.UUID):
        return value
    return uuid.UUID(str(value))  # SQLite and JSON carry it as text


def _aware(value: Any) -> Any:
    if timezone.is_naive(value):
        return timezone.make_aware(value, UTC)
    return value


def bearer_authenticate(request: HttpRequest) -> TokenContext:
    """The request's token context; NotAuthenticated (401) without a live bearer token."""
    token = bearer_token(request)
    if token is None:
        raise NotAuthenticated("a bearer access token is required (Authorization: Bearer <token>)")
    context = token_context(token)
    if context is None:
        raise NotAuthenticated("the access token is unknown, expired or revoked", token_given=True)
    return context


class BearerTokenAuthentication(BaseAuthentication):
    """DRF authentication with the same lookup: `request.user` is the acting user, `request.auth` the context."""

    def authenticate(self, request: Request) -> tuple[User, TokenContext] | None:
        token = bearer_token(request._request)
        if token is None:
            return None
        context = token_context(token)
        if context is None:
            raise AuthenticationFailed("the access token is unknown, expired or revoked")
        return context.user, context

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="HealthLedger API"'
