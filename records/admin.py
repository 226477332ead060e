"""Admin views of the record store: identities and timestamps only, never ciphertext or keys.

Everything is read-only here: records change through services (ingest, erasure),
which keep the access log; the admin keeps none of that.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from records.models import Patient, Resource


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Patient)
class PatientAdmin(ReadOnlyAdmin):
    list_display = ("id", "user", "fhir_id", "master_key_id", "created_at", "erased_at")
    list_filter = ("erased_at",)
    search_fields = ("id", "fhir_id")
    fields = ("id", "user", "fhir_id", "master_key_id", "created_at", "erased_at")


@admin.register(Resource)
class ResourceAdmin(ReadOnlyAdmin):
    list_display = ("resource_type", "fhir_id", "patient", "current_version", "updated_at")
    list_filter = ("resource_type",)
    search_fields = ("fhir_id",)
    fields = ("patient", "resource_type", "fhir_id", "current_version", "updated_at")
