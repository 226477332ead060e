"""The portal's query parameters: each read once, here, into the value a view needs, or a friendly 400 or 404.

A page address is typed and edited by people: `?version=²` must not reach int() (str.isdigit
says yes to a superscript two, int() says no), and twenty digits must not reach the database
(its integers stop at 2**63). What no record can hold is "not found"; what is no number is a 400.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.http import HttpRequest

from healthledger.errors import HealthLedgerError, ResourceNotFound

# Versions are numbered from 1 in a 32-bit column, as the FHIR API's vread takes them.
MAX_VERSION = 2**31 - 1
# Fifty entries a page: a million pages is fifty million accesses, more than any one record's log.
MAX_PAGE = 1_000_000


@dataclass
class BadQuery(HealthLedgerError):
    """A query parameter that is not what the page takes (400, shown as the page's message)."""

    status: int = field(default=400, kw_only=True)
    issue_code: str = field(default="invalid", kw_only=True)


def whole_number(request: HttpRequest, name: str, *, label: str, maximum: int) -> int | None:
    """`name` as a whole number from 1 (None when absent or empty); BadQuery for anything else.

    A number past `maximum` names nothing that exists: ResourceNotFound, the page's 404.
    """
    value = request.GET.get(name, "")
    if not value:
        return None
    # ASCII digits only: str.isdigit() says yes to "²", which int() refuses.
    digits = value.lstrip("0")
    if not (value.isascii() and value.isdigit()) or not digits:
        raise BadQuery(f"The {label} must be a whole number from 1.")
    # Length first: int() of thousands of digits is slow, and past 4,300 it raises.
    if len(digits) > len(str(maximum)) or int(digits) > maximum:
        raise ResourceNotFound(f"no such {label}")
    return int(digits)


def version_param(request: HttpRequest) -> int | None:
    return whole_number(request, "version", label="version", maximum=MAX_VERSION)


def page_param(request: HttpRequest) -> int:
    return whole_number(request, "page", label="page", maximum=MAX_PAGE) or 1
