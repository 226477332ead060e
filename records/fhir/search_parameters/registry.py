"""The search parameters of each record type, declared once: the parser, the CapabilityStatement and the docs follow.

Each parameter says what it searches (a FHIRPath expression, for the reader and the
CapabilityStatement) and which column of the blind index (or of the row) answers it: the
index's extraction is records.fhir.index, whose element tables the expressions are built
from, so a path added there shows here. A type gets a parameter only when it has an element
that parameter reads (no `code` on Patient).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from records.fhir.elements import ELEMENTS
from records.fhir.index import (
    CATEGORIES,
    DATE_ELEMENTS,
    DEFAULT_CATEGORIES,
    DEFAULT_MAIN_CODES,
    MAIN_CODES,
    PATIENT_ELEMENTS,
)

HL7 = "http://hl7.org/fhir/SearchParameter"
# Where this server's own definitions live: their canonical URL is the FHIR base's SearchParameter/<id>.
LOCAL = "SearchParameter"


@dataclass(frozen=True)
class SearchParameter:
    code: str  # the name in a query
    type: str  # FHIR search parameter type: token, reference, date ...
    expression: str  # FHIRPath over the resource
    description: str
    # What answers it: "record" (the record searched), "id", "code", "category", "date", "term" (blind-index
    # tokens: a term's are records.fhir.search_parameters.search_terms), "updated" (the row's update, in the clear).
    index: str
    # HL7's canonical when this is the standard definition, else "" (this server's: SearchParameter/<id>).
    standard_url: str = ""
    resource_type: str = "Resource"
    # Modifiers it takes beyond the plain form ("text": code:text), each answered by its own terms.
    modifiers: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.resource_type}-{self.code.lstrip('_')}"

    def url(self, fhir_base: str) -> str:
        return self.standard_url or f"{fhir_base}/{LOCAL}/{self.id}"


@dataclass(frozen=True)
class Term:
    """A parameter answered by "term" tokens: what it reads from which element, and on which types."""

    code: str
    type: str  # token, string, reference or quantity
    # The element it reads: a top-level name, or a path through repeating elements ("component.code").
    element: str
    # How the element's values become tokens: "code" (a code), "concept" (a CodeableConcept), "identifier",
    # "name" (every word of a HumanName), "family", "given" (those parts of it), "reference", "quantity"
    # (records.fhir.quantity), "text" (the words of a CodeableConcept's text and its codings' displays).
    reads: str
    types: frozenset[str]
    description: str
    # HL7's canonical for a type ("{type}" filled in), when this is the standard definition.
    standard_url: str = ""
    # A reference's target type, which a bare id in a query names ("encounter=123": Encounter/123).
    target: str = ""


_STATUS_TYPES = frozenset(
    {
        "CarePlan",
        "CareTeam",
        "DiagnosticReport",
        "DocumentReference",
        "Encounter",
        "Immunization",
        "MedicationAdministration",
        "MedicationDispense",
        "MedicationRequest",
        "MedicationStatement",
        "Observation",
        "Procedure",
        "ServiceRequest",
    }
)
_CLINICAL_STATUS_TYPES = frozenset({"AllergyIntolerance", "Condition"})
_ENCOUNTER_TYPES = frozenset(
    {
        "AllergyIntolerance",
        "CarePlan",
        "Condition",
        "DiagnosticReport",
        "DocumentReference",
        "Immunization",
        "MedicationAdministration",
        "MedicationRequest",
        "Observation",
        "Procedure",
        "ServiceRequest",
    }
)
_OBSERVATION = frozenset({"Observation"})
_PATIENT = frozenset({"Patient"})
_TOKEN_HELP = "code, or system|code (|code: no system); comma-separated alternatives"
_STRING_HELP = "starts with, ignoring case and accents; several words must each start a word of the name"
_QUANTITY_HELP = (
    "[prefix]number[|system|code]: eq (to the digits written), ne, gt, ge, lt, le, sa, eb, ap; a UCUM unit "
    "matches any unit of the same dimension (mmol/L and mol/m3), no unit matches any; six significant digits"
)

# One row per parameter answered by term tokens:
# code, type, element, reads, types, description, HL7 canonical ("{type}" filled in), reference target.
_TERM_TABLE: tuple[tuple[str, str, str, str, frozenset[str], str, str, str], ...] = (
    ("status", "token", "status", "code", _STATUS_TYPES, f"The status: {_TOKEN_HELP}", "{type}-status", ""),
    ("clinical-status", "token", "clinicalStatus", "concept", _CLINICAL_STATUS_TYPES,
     f"The clinical status: {_TOKEN_HELP}", "{type}-clinical-status", ""),
    ("verification-status", "token", "verificationStatus", "concept", _CLINICAL_STATUS_TYPES,
     f"The verification status: {_TOKEN_HELP}", "{type}-verification-status", ""),
    ("gender", "token", "gender", "code", _PATIENT, "male, female, other, unknown", "individual-gender", ""),
    ("identifier", "token", "identifier", "identifier", _PATIENT, "An identifier: value, or system|value",
     "Patient-identifier", ""),
    ("name", "string", "name", "name", _PATIENT, f"Any part of a name: {_STRING_HELP}", "Patient-name", ""),
    ("family", "string", "name", "family", _PATIENT, f"The family name: {_STRING_HELP}", "individual-family", ""),
    ("given", "string", "name", "given", _PATIENT, f"A given name: {_STRING_HELP}", "individual-given", ""),
    ("encounter", "reference", "encounter", "reference", _ENCOUNTER_TYPES,
     "The encounter it belongs to: Encounter/<id> or <id>", "", "Encounter"),
    ("target", "reference", "target", "reference", frozenset({"Provenance"}),
     "A resource the provenance is about: <type>/<id>", "Provenance-target", ""),
    # Observation's own code, apart from its components' (combo-code searches both; the index's "code" kind).
    ("code", "token", "code", "concept", _OBSERVATION,
     f"The observation's code, not its components': {_TOKEN_HELP}; code:text searches its words",
     "clinical-code", ""),
    ("component-code", "token", "component.code", "concept", _OBSERVATION,
     f"A component's code: {_TOKEN_HELP}", "Observation-component-code", ""),
    ("value-quantity", "quantity", "valueQuantity", "quantity", _OBSERVATION,
     f"The value: {_QUANTITY_HELP}", "Observation-value-quantity", ""),
)  # fmt: skip
TERMS = tuple(
    Term(code, kind, element, reads, types, help_text, f"{HL7}/{url}" if url else "", target)
    for code, kind, element, reads, types, help_text, url, target in _TERM_TABLE
)
# The types whose `code` is a term of its own (above); every other type's is the index's "code" kind.
OWN_CODE_TERM = frozenset(t for term in TERMS if term.code == "code" for t in term.types)
# Parameters named by a modifier on a parameter ("code:text"), answered by terms of their own.
MODIFIERS: dict[str, tuple[str, ...]] = {"code": ("text",)}


def elements_read() -> frozenset[str]:
    """Every top-level element some parameter reads (the ELEMENTS table holds these, per type)."""
    read = set(DATE_ELEMENTS) | set(PATIENT_ELEMENTS) | {"code", "category", "class"}
    read |= {t.element.split(".")[0] for t in TERMS}
    for paths in MAIN_CODES.values():
        read |= {path.split(".")[0] for path in paths}
    return frozenset(read)


COMMON = (
    SearchParameter("_id", "token", "Resource.id", "Resource ids, comma-separated", "id", f"{HL7}/Resource-id"),
    SearchParameter(
        "_lastUpdated",
        "date",
        "Resource.meta.lastUpdated",
        "When the server stored the current version, to the instant; prefixes eq, ne, gt, ge, lt, le, sa, eb, ap",
        "updated",
        f"{HL7}/Resource-lastUpdated",
    ),
)


def _paths(resource_type: str, paths: tuple[str, ...]) -> tuple[str, ...]:
    present = ELEMENTS.get(resource_type, frozenset())
    return tuple(p for p in paths if p.split(".")[0] in present)


def _expression(resource_type: str, paths: tuple[str, ...]) -> str:
    return " | ".join(f"{resource_type}.{p}" for p in paths)


def _declared(resource_type: str) -> list[SearchParameter]:
    out: list[SearchParameter] = []
    if resource_type != "Patient":
        subjects = _paths(resource_type, PATIENT_ELEMENTS)
        out.append(
            SearchParameter(
                "patient",
                "reference",
                _expression(resource_type, subjects),
                "The patient whose record is searched (Patient/<id> or <id>); patients default to their own",
                "record",
                resource_type=resource_type,
            )
        )
        if "subject" in subjects:
            out.append(
                SearchParameter(
                    "subject",
                    "reference",
                    f"{resource_type}.subject",
                    "Same as patient: subject=Patient/<id>",
                    "record",
                    resource_type=resource_type,
                )
            )
    codes = _paths(resource_type, MAIN_CODES.get(resource_type, DEFAULT_MAIN_CODES))
    if codes:
        # Observation: `code` is the observation's own (a term below), `combo-code` this, with its components.
        combo = resource_type in OWN_CODE_TERM
        out.append(
            SearchParameter(
                "combo-code" if combo else "code",
                "token",
                _expression(resource_type, codes),
                "code (any system), system|code or |code (no system); commas for OR, repeat for AND"
                + ("; the observation's code or a component's" if combo else "; code:text searches its words"),
                "code",
                f"{HL7}/Observation-combo-code" if combo else "",
                resource_type=resource_type,
                modifiers=() if combo else MODIFIERS["code"],
            )
        )
    categories = _paths(resource_type, CATEGORIES.get(resource_type, DEFAULT_CATEGORIES))
    if categories:
        out.append(
            SearchParameter(
                "category",
                "token",
                _expression(resource_type, categories),
                "system|code, comma-separated alternatives",
                "category",
                resource_type=resource_type,
            )
        )
    present = ELEMENTS.get(resource_type, frozenset())
    for term in TERMS:
        if resource_type in term.types and term.element.split(".")[0] in present:
            out.append(
                SearchParameter(
                    term.code,
                    term.type,
                    f"{resource_type}.{term.element}" + {"family": ".family", "given": ".given"}.get(term.reads, ""),
                    term.description,
                    "term",
                    term.standard_url.replace("{type}", resource_type),
                    resource_type=resource_type,
                    modifiers=MODIFIERS.get(term.code, ()),
                )
            )
    dates = _paths(resource_type, DATE_ELEMENTS)
    if resource_type == "Patient":
        out.append(
            SearchParameter(
                "birthdate",
                "date",
                "Patient.birthDate",
                "The patient's date of birth; prefixes eq, ne, gt, ge, lt, le, sa, eb, ap",
                "date",
                f"{HL7}/individual-birthdate",
                resource_type=resource_type,
            )
        )
    elif dates:
        out.append(
            SearchParameter(
                "date",
                "date",
                _expression(resource_type, dates),
                "The resource's clinical dates, by calendar day; prefixes eq, ne, gt, ge, lt, le, sa, eb, ap",
                "date",
                resource_type=resource_type,
            )
        )
    return out


@lru_cache(maxsize=256)
def search_parameters(resource_type: str) -> dict[str, SearchParameter]:
    """The parameters a search of `resource_type` takes, by name (the common ones first)."""
    return {p.code: p for p in (*COMMON, *_declared(resource_type))}


def search_parameter_by_id(parameter_id: str) -> SearchParameter | None:
    """A definition by its id ("Observation-code", "Resource-id"), for SearchParameter reads."""
    resource_type, _, _ = parameter_id.partition("-")
    for parameter in search_parameters(resource_type).values():
        if parameter.id == parameter_id and not parameter.standard_url:
            return parameter
    return None


def reference_elements(resource_type: str, code: str) -> tuple[str, ...]:
    """The elements a reference parameter of the type reads (for _include), () when it is not one."""
    parameter = search_parameters(resource_type).get(code)
    if parameter is None or parameter.type != "reference":
        return ()
    if parameter.index == "record":
        return _paths(resource_type, ("subject",) if code == "subject" else PATIENT_ELEMENTS)
    return tuple(t.element for t in TERMS if t.code == code)
