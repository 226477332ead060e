"""Searchset Bundles assembled from stored bytes, with paging links that carry the request's own query.

The resources go into the Bundle as the gate returned them: nothing is parsed or
re-serialized. A page's links depend only on the query, the total the caller may see and
the page position, so a denied search and a search of nothing are byte-identical.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from django.http import HttpRequest, HttpResponse

from api.fhir.params import Paging
from api.outcomes import FHIR_CONTENT_TYPE


def base_url(request: HttpRequest) -> str:
    """The FHIR base the client used (scheme, host and /fhir), for fullUrl and links."""
    return request.build_absolute_uri("/fhir")


def _link(request: HttpRequest, offset: int, count: int, ignored: Sequence[str] = ()) -> str:
    query = request.GET.copy()
    for name in ignored:  # the self link says what the search did: without what it ignored
        query.pop(name, None)
    query.setlist("_offset", [str(offset)])
    query.setlist("_count", [str(count)])
    return request.build_absolute_uri(request.path) + "?" + query.urlencode(safe="|:/,")


def paging_links(request: HttpRequest, paging: Paging, total: int, ignored: Sequence[str] = ()) -> list[dict[str, str]]:
    """self, first, previous, next and last, each with the same query; none that points past what may be seen."""
    count, offset = paging.count, paging.offset
    links = [{"relation": "self", "url": _link(request, offset, count, ignored)}]
    if count == 0:
        return links
    links.append({"relation": "first", "url": _link(request, 0, count, ignored)})
    if offset > 0:
        links.append({"relation": "previous", "url": _link(request, max(0, offset - count), count, ignored)})
    if offset + count < total:
        links.append({"relation": "next", "url": _link(request, offset + count, count, ignored)})
    last = max(0, (total - 1) // count * count) if total else 0
    links.append({"relation": "last", "url": _link(request, last, count, ignored)})
    return links


def _ignored_outcome(ignored: Sequence[str]) -> bytes:
    """The searchset entry (search.mode outcome) that names the parameters the search ignored."""
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "warning",
                "code": "not-supported",
                "diagnostics": f"search parameter(s) ignored: {', '.join(ignored)}",
            }
        ],
    }
    return b'{"resource":' + orjson.dumps(outcome) + b',"search":{"mode":"outcome"}}'


def searchset(
    request: HttpRequest,
    paging: Paging,
    total: int,
    entries: Sequence[tuple[str, bytes]],
    ignored: Sequence[str] = (),
) -> HttpResponse:
    """A searchset response; `entries` are (Type/id, stored JSON bytes) in page order; `ignored` parameter names."""
    base = base_url(request)
    head = orjson.dumps({"resourceType": "Bundle", "type": "searchset", "total": total,
                         "link": paging_links(request, paging, total, ignored)})  # fmt: skip
    # The resource bytes are the stored canonical JSON, placed as they are.
    parts = [
        b'{"fullUrl":' + orjson.dumps(f"{base}/{ref}") + b',"resource":' + data + b',"search":{"mode":"match"}}'
        for ref, data in entries
    ]
    if ignored:
        parts.append(_ignored_outcome(ignored))
    if not parts:
        return HttpResponse(head, content_type=FHIR_CONTENT_TYPE)
    return HttpResponse(head[:-1] + b',"entry":[' + b",".join(parts) + b"]}", content_type=FHIR_CONTENT_TYPE)
