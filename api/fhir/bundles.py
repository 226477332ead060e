"""Searchset Bundles assembled from stored bytes, with paging links that carry the request's own query.

The resources go into the Bundle as the gate returned them: nothing is parsed or
re-serialized. A page's links depend only on the query, the total the caller may see and
the page position, so a denied search and a search of nothing are byte-identical.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

import orjson
from django.http import HttpRequest, HttpResponse, QueryDict

from api.fhir.params import Paging
from api.outcomes import FHIR_CONTENT_TYPE


def base_url(request: HttpRequest) -> str:
    """The FHIR base the client used (scheme, host and /fhir), for fullUrl and links."""
    return request.build_absolute_uri("/fhir")


@dataclass(frozen=True)
class SearchUrl:
    """The GET form of a search, which its links repeat: a compartment's path, or a POST _search as a GET."""

    path: str
    query: QueryDict


# What the links leave unescaped: FHIR's own separators read better as they are.
_SAFE = "|:/,"


def _link_maker(
    request: HttpRequest, count: int, ignored: Sequence[str], url: SearchUrl | None
) -> Callable[[int], str]:
    """The page links' URL for an offset: the query encoded once, only `_offset` differing between links."""
    asked = url.query if url is not None else request.GET
    # The query's lists in order, as QueryDict.copy() then pop/setlist would leave them, without its deep copy.
    lists = dict(asked.lists())
    for name in ignored:  # the self link says what the search did: without what it ignored
        lists.pop(name, None)
    if lists.get("_summary", [None])[-1] == "count":
        lists.pop("_summary")  # said by _count=0
    lists["_offset"] = ["0"]
    lists["_count"] = [str(count)]
    # QueryDict.urlencode(safe=...) pair by pair, split around the one _offset pair that differs per link.
    pairs = [
        (key, f"{quote(key, _SAFE)}={quote(str(value), _SAFE)}") for key, values in lists.items() for value in values
    ]
    at = [key for key, _ in pairs].index("_offset")
    head = request.build_absolute_uri(url.path if url is not None else request.path) + "?"
    start = "".join(f"{pair}&" for _, pair in pairs[:at])
    end = "".join(f"&{pair}" for _, pair in pairs[at + 1 :])

    def link(offset: int) -> str:
        return f"{head}{start}_offset={offset}{end}"

    return link


def paging_links(
    request: HttpRequest, paging: Paging, total: int, ignored: Sequence[str] = (), url: SearchUrl | None = None
) -> list[dict[str, str]]:
    """self, first, previous, next and last, each with the same query; none that points past what may be seen."""
    count, offset = paging.count, paging.offset
    link = _link_maker(request, count, ignored, url)
    links = [{"relation": "self", "url": link(offset)}]
    if count == 0:
        return links
    links.append({"relation": "first", "url": link(0)})
    if offset > 0:
        links.append({"relation": "previous", "url": link(max(0, offset - count))})
    if offset + count < total:
        links.append({"relation": "next", "url": link(offset + count)})
    last = max(0, (total - 1) // count * count) if total else 0
    links.append({"relation": "last", "url": link(last)})
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


def _failed_outcome(failed: Sequence[str]) -> bytes:
    """The searchset entry (search.mode outcome) naming matches left out because they failed their integrity check."""
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "warning",
                "code": "exception",
                "diagnostics": "left out: the stored data of these failed its integrity check (the patient's access"
                f" log says so): {', '.join(failed)}",
                "expression": list(failed),
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
    url: SearchUrl | None = None,
    included: Sequence[tuple[str, bytes]] = (),
    *,
    failed: Sequence[str] = (),
) -> HttpResponse:
    """A searchset response; `entries` are (Type/id, stored JSON bytes) in page order; `ignored` parameter names.

    `failed` names matches of the page left out because their stored bytes failed the integrity check.
    """
    base = base_url(request)
    head = orjson.dumps({"resourceType": "Bundle", "type": "searchset", "total": total,
                         "link": paging_links(request, paging, total, ignored, url)})  # fmt: skip
    # The resource bytes are the stored canonical JSON, placed as they are: the Bundle is one join of fragments,
    # so each resource's bytes are copied once (building an entry and then the Bundle copied each twice more).
    parts: list[bytes] = [head[:-1], b',"entry":[']
    for mode, listed in ((b"match", entries), (b"include", included)):
        tail = b',"search":{"mode":"' + mode + b'"}},'
        for ref, data in listed:
            parts += (b'{"fullUrl":', orjson.dumps(f"{base}/{ref}"), b',"resource":', data, tail)
    if ignored:
        parts += (_ignored_outcome(ignored), b",")
    if failed:
        parts += (_failed_outcome(failed), b",")
    if len(parts) == 2:
        return HttpResponse(head, content_type=FHIR_CONTENT_TYPE)
    parts[-1] = parts[-1][:-1]  # the last entry's comma
    parts.append(b"]}")
    return HttpResponse(b"".join(parts), content_type=FHIR_CONTENT_TYPE)
