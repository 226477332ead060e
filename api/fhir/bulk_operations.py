"""The OperationDefinitions of bulk and whole-record access: $everything and the Bulk Data IG's $export.

Declared once here; api.fhir.operations serves them at OperationDefinition/{id}, and the
CapabilityStatement names them (the base: export; Patient: everything, export; Group: export). Each definition
derives from the standard one (`base`), narrowed to what this server takes.
"""

from __future__ import annotations

from typing import Any

_BULK_IG = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition"

_EXPORT_INPUTS = [
    ("_outputFormat", "string", "application/fhir+ndjson (the default and only format)"),
    ("_since", "instant", "Only resources updated at or after this instant"),
    ("_type", "string", "Comma-separated resource types to export (default: every type the token may read)"),
    (
        "_typeFilter",
        "string",
        "<type>?<search parameters of that type>, several ORed per type (code, category, date, status, "
        "_lastUpdated ... as that type's search takes them)",
    ),
]
_EXPORT_DESCRIPTION = (
    "FHIR Bulk Data export (IG v2). Needs Prefer: respond-async; answers 202 with Content-Location, a status URL "
    "answering 202 with Retry-After and X-Progress until a manifest (200) lists one ndjson file per type. "
    "Every resource is read through the patient's consent and written to their access log; a grant ended "
    "mid-export stops the rest of that record's export (named in the manifest's error file). Files are "
    "encrypted at rest, served only to the client that asked, with its bearer token, each patient in a file "
    "decided again at download (a grant ended since leaves that patient out) and logged, and deleted after "
    "an hour; DELETE on the status URL cancels."
)


def _definition(
    *, id: str, code: str, title: str, description: str, resources: list[str], system: bool, type: bool,
    instance: bool, base: str, inputs: list[tuple[str, str, str]], output: tuple[str, str],
) -> dict[str, Any]:  # fmt: skip
    parameters: list[dict[str, Any]] = [
        {"name": name, "use": "in", "min": 0, "max": "*" if name == "_typeFilter" else "1", "type": kind,
         "documentation": doc}
        for name, kind, doc in inputs
    ]  # fmt: skip
    parameters.append({"name": "return", "use": "out", "min": 0, "max": "1", "type": output[0],
                       "documentation": output[1]})  # fmt: skip
    return {
        "resourceType": "OperationDefinition",
        "id": id,
        "name": id.replace("-", ""),
        "title": title,
        "status": "active",
        "kind": "operation",
        "description": description,
        "affectsState": False,
        "code": code,
        "base": base,
        **({"resource": resources} if resources else {}),  # FHIR has no empty arrays: a system-level one has none
        "system": system,
        "type": type,
        "instance": instance,
        "parameter": parameters,
    }


DEFINITIONS: dict[str, dict[str, Any]] = {
    "Patient-everything": _definition(
        id="Patient-everything",
        code="everything",
        title="Everything of one record that the caller's grant covers",
        description=(
            "A searchset of the record's resources that the caller's grant and token cover (Patient first, then "
            "by type and id), paged with _count and _offset; each page read through the consent gate and logged. "
            "A record the caller may not see answers 404, as a missing one does."
        ),
        resources=["Patient"],
        system=False,
        type=False,
        instance=True,
        base="http://hl7.org/fhir/OperationDefinition/Patient-everything",
        inputs=[
            ("_since", "instant", "Only resources updated at or after this instant"),
            ("_type", "string", "Comma-separated resource types (default: every type the grant covers)"),
            ("_count", "integer", "Page size (default 50, at most 1000)"),
            ("_offset", "integer", "Where the page starts"),
        ],
        output=("Bundle", "A searchset Bundle"),
    ),
    "export": _definition(
        id="export",
        code="export",
        title="Bulk export for a backend service: every record its owner's live grants cover",
        description=_EXPORT_DESCRIPTION + " $export at the base is for backend services (SMART Backend Services: "
        "client credentials with a private_key_jwt assertion, system/ scopes); it covers every record on which the "
        "client's owner holds a live grant, decided again for each chunk.",
        resources=[],
        system=True,
        type=False,
        instance=False,
        base=f"{_BULK_IG}/export",
        inputs=_EXPORT_INPUTS,
        output=("Binary", "The manifest, at the status URL once complete"),
    ),
    "Patient-export": _definition(
        id="Patient-export",
        code="export",
        title="Bulk export of every record the caller may export",
        description=_EXPORT_DESCRIPTION + " Patient/$export covers a patient's own record, or every record on which "
        "the caller holds a live grant.",
        resources=["Patient"],
        system=False,
        type=True,
        instance=False,
        base=f"{_BULK_IG}/patient-export",
        inputs=_EXPORT_INPUTS,
        output=("Binary", "The manifest, at the status URL once complete"),
    ),
    "Group-export": _definition(
        id="Group-export",
        code="export",
        title="Bulk export of a Group: the patients whose live grants cover the caller",
        description=_EXPORT_DESCRIPTION + " The caller's Group is GET Group (its id: granted-<user>).",
        resources=["Group"],
        system=False,
        type=False,
        instance=True,
        base=f"{_BULK_IG}/group-export",
        inputs=_EXPORT_INPUTS,
        output=("Binary", "The manifest, at the status URL once complete"),
    ),
}


def bulk_definition(definition_id: str, fhir_base: str) -> dict[str, Any] | None:
    """One OperationDefinition with its canonical URL on this server; None for an id not declared here."""
    definition = DEFINITIONS.get(definition_id)
    if definition is None:
        return None
    return {**definition, "url": f"{fhir_base}/OperationDefinition/{definition_id}"}


def bulk_capability_operations(resource_type: str, fhir_base: str) -> list[dict[str, str]]:
    """The CapabilityStatement's `operation` entries of a type for these operations."""
    return [
        {"name": d["code"], "definition": f"{fhir_base}/OperationDefinition/{d['id']}"}
        for d in DEFINITIONS.values()
        if resource_type in d.get("resource", ())
    ]


def system_capability_operations(fhir_base: str) -> list[dict[str, str]]:
    """The CapabilityStatement's system-level `operation` entries (rest.operation): $export at the base."""
    return [
        {"name": d["code"], "definition": f"{fhir_base}/OperationDefinition/{d['id']}"}
        for d in DEFINITIONS.values()
        if d["system"]
    ]


def group_capability(fhir_base: str) -> dict[str, Any]:
    """The CapabilityStatement's entry for Group: the caller's one Group, read and searched, and exported."""
    return {
        "type": "Group",
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "documentation": "The caller's Group: the patients whose live grants cover them (GET Group finds it).",
        "operation": bulk_capability_operations("Group", fhir_base),
    }
