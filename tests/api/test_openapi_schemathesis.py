"""schemathesis against the OpenAPI schema of the non-FHIR endpoints: whatever it sends, no server error.

Every operation is fuzzed with valid (positive) and invalid (negative) requests, with the
caller's token and without one. The schema is loaded through the WSGI app inside the test,
so requests run on the test database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

pytestmark = pytest.mark.django_db


@contextmanager
def connection_kept_across_requests() -> Iterator[None]:
    """What Django's test client does: a request must not close the connection holding the test's transaction.

    (The test client reconnects these signals after each of its own requests: enter this after using it.)
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def _schema():  # type: ignore[no-untyped-def]
    return schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())


def _operations() -> list[tuple[str, str]]:
    with connection_kept_across_requests():
        return [(op.ok().method.upper(), op.ok().path) for op in _schema().get_all_operations()]


def test_the_schema_documents_the_json_api_with_bearer_security(api):  # type: ignore[no-untyped-def]
    document = api.get("/api/schema/?format=json").json()

    assert ("POST", "/api/token/introspect") in _operations()
    assert document["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("with_token", [True, False])
def test_no_generated_request_makes_a_server_error(clinician, token_for, mode, with_token):  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {token_for(clinician)}"} if with_token else {}
    checked = 0
    with connection_kept_across_requests():
        for result in _schema().get_all_operations():
            operation = result.ok()

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def fuzz(case) -> None:  # type: ignore[no-untyped-def]
                case.call_and_validate(headers=headers, checks=[not_a_server_error])

            fuzz()
            checked += 1
    assert checked >= 1
