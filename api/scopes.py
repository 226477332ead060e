"""SMART App Launch scopes: parsing, and what a token's scopes allow.

Scopes only narrow: a token's scopes say which resource types and interactions the
client may even ask for; the patient's grant (consent.pdp) then decides. Accepted
forms (SMART v2, with the v1 spellings clients still send):

    patient/Observation.rs   user/*.cruds   system/Condition.read   user/*.write   user/*.*
    openid  fhirUser  profile  launch  launch/patient  offline_access  online_access

`patient/`, `user/` and `system/` mean the same here: every request names its one
patient (a patient user's own record, or the `patient` a clinician's grant covers),
so there is no launch context to narrow further. Granular v2 scopes with a query
(`patient/Observation.rs?category=...`) are refused at the token endpoint rather
than silently widened.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from oauth2_provider.scopes import BaseScopes

from records.fhir.resource_types import RESOURCE_TYPES

# SMART v2 permission letters, in the order the spec requires them to appear.
PERMISSIONS = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_RESOURCE_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]{1,63})\.(\*|read|write|c?r?u?d?s?)$")
PLAIN_SCOPES = frozenset(
    {"openid", "fhirUser", "profile", "launch", "launch/patient", "offline_access", "online_access"}
)
DEFAULT_SCOPES = ("user/*.rs",)
# The researcher API's own scopes (api/research.py): never a FHIR resource scope, never patient data.
RESEARCH_SCOPES = frozenset({"research.read", "research.write"})


@dataclass(frozen=True)
class ResourceScope:
    context: str  # patient | user | system
    resource_type: str  # a FHIR type, or "*"
    permissions: str  # a subset of "cruds"


def scope_parse(scope: str) -> ResourceScope | None:
    """A resource scope, or None for a plain scope (openid, fhirUser ...); ValueError when it is neither."""
    if scope in PLAIN_SCOPES or scope in RESEARCH_SCOPES:
        return None
    match = _RESOURCE_SCOPE.match(scope)
    if match is None:
        raise ValueError(f"unsupported scope {scope!r}")
    context, resource_type, permissions = match.groups()
    if resource_type != "*" and resource_type not in RESOURCE_TYPES:
        raise ValueError(f"unknown resource type in scope {scope!r}")
    permissions = _V1.get(permissions, permissions)
    if not permissions:
        raise ValueError(f"scope {scope!r} grants no permission")
    return ResourceScope(context=context, resource_type=resource_type, permissions=permissions)


def scope_valid(scope: str) -> bool:
    try:
        scope_parse(scope)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class ScopeSet:
    """The parsed scopes of one token."""

    raw: tuple[str, ...]
    resources: tuple[ResourceScope, ...]

    @staticmethod
    @functools.lru_cache(maxsize=1024)
    def from_string(scopes: str) -> ScopeSet:
        # Every API request parses its token's scope string: frozen, one parsed value serves them all.
        raw = tuple(s for s in scopes.split() if s)
        parsed = []
        for scope in raw:
            try:
                found = scope_parse(scope)
            except ValueError:
                continue  # stored before a rule changed: ignored, never widened
            if found is not None:
                parsed.append(found)
        return ScopeSet(raw=raw, resources=tuple(parsed))

    def allows(self, resource_type: str, permission: str) -> bool:
        """Whether any scope lets the client use `permission` (one of c r u d s) on `resource_type`."""
        return any(permission in s.permissions and s.resource_type in ("*", resource_type) for s in self.resources)

    def __contains__(self, scope: object) -> bool:
        return scope in self.raw


class _Descriptions(dict[str, str]):
    """Every valid scope has a description, so DOT's consent page can show patterned scopes too."""

    def __missing__(self, scope: str) -> str:
        try:
            parsed = scope_parse(scope)
        except ValueError:
            return scope
        if parsed is None:
            return scope
        verbs = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
        what = "all resource types" if parsed.resource_type == "*" else f"{parsed.resource_type} resources"
        allowed = ", ".join(verbs[p] for p in parsed.permissions)
        return f"{allowed} {what} (within what the patient's consent allows)"


_DESCRIPTIONS = _Descriptions(
    {
        "openid": "Know who you are",
        "fhirUser": "Know your FHIR user identity",
        "profile": "Know your profile",
        "launch": "Launch context",
        "launch/patient": "The patient in context",
        "offline_access": "Stay signed in (refresh tokens)",
        "online_access": "Stay signed in while you are",
        "research.read": "Read your studies, runs and released results (aggregate tables only)",
        "research.write": "Request studies, run their approved analyses and ask for releases",
    }
)


class SmartScopes(BaseScopes):
    """django-oauth-toolkit scopes backend: any well-formed SMART scope is available; defaults to `user/*.rs`."""

    def get_all_scopes(self) -> dict[str, str]:
        return _DESCRIPTIONS

    def get_available_scopes(
        self, application: Any = None, request: Any = None, *args: Any, **kwargs: Any
    ) -> list[str]:
        asked = list(getattr(request, "scopes", None) or []) if request is not None else []
        return [*PLAIN_SCOPES, *DEFAULT_SCOPES, *(s for s in asked if scope_valid(s))]

    def get_default_scopes(self, application: Any = None, request: Any = None, *args: Any, **kwargs: Any) -> list[str]:
        return list(DEFAULT_SCOPES)
