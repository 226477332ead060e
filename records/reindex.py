"""Rebuilding a record's blind index from its current versions, when the registry gains a parameter.

records never decides who may read: the caller (consent.gate.record_index_rebuild, the only
caller) decrypts the current versions and hands the plaintext here, inside its transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from records import blind_index
from records.fhir import index_terms
from records.models import IndexToken, Patient, Resource
from records.selectors import StoredVersion

BATCH = 1000


def index_tokens_rebuild(*, patient: Patient, stored: Sequence[StoredVersion], bodies: Sequence[bytes]) -> int:
    """Replace the index tokens of each resource with those its current content yields; how many tokens now."""
    pks = {
        (resource_type, fhir_id): pk
        for resource_type, fhir_id, pk in Resource.objects.filter(patient_id=patient.pk).values_list(
            "resource_type", "fhir_id", "pk"
        )
    }
    rows: list[IndexToken] = []
    for item, body in zip(stored, bodies, strict=True):
        terms = index_terms(orjson.loads(body))
        tokens = blind_index.resource_tokens(
            patient_id=patient.pk, codes=terms.codes, categories=terms.categories, dates=terms.dates, terms=terms.terms
        )
        rows.extend(IndexToken(resource_id=pks[(item.resource_type, item.fhir_id)], token=token) for token in tokens)
    IndexToken.objects.filter(resource__patient_id=patient.pk).delete()
    IndexToken.objects.bulk_create(rows, batch_size=BATCH)
    return len(rows)
