"""REQUIRED code bindings that `fhir.resources.R4B` does not enforce.

R4B types every `code` element as a plain string: Observation.status "nonsense" or
Patient.gender "zzz" validate. A server must not accept them, because a status
decides what a record means ("entered-in-error" results are not results). This
module holds the REQUIRED value sets of the status-like elements of the clinical
and financial resources (every type Synthea writes, and the common others), taken
from the FHIR R4/R4B specification, and checks a resource against them.

A CodeableConcept bound REQUIRED (Condition.clinicalStatus ...) must carry a coding
from the bound code system, and every coding of that system must hold a code of
the value set. Diagnostics name the element and the allowed codes, never the value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from healthledger.errors import OutcomeIssue


@dataclass(frozen=True)
class ValueSet:
    name: str
    codes: frozenset[str]
    system: str | None = None  # set for CodeableConcept bindings: the code system the coding must use

    def describe(self) -> str:
        return "|".join(sorted(self.codes))


def _vs(name: str, codes: str, system: str | None = None) -> ValueSet:
    return ValueSet(name=name, codes=frozenset(codes.split()), system=system)


TERMINOLOGY = "http://terminology.hl7.org/CodeSystem/"

OBSERVATION_STATUS = _vs(
    "observation-status", "registered preliminary final amended corrected cancelled entered-in-error unknown"
)
DIAGNOSTIC_REPORT_STATUS = _vs(
    "diagnostic-report-status",
    "registered partial preliminary final amended corrected appended cancelled entered-in-error unknown",
)
ENCOUNTER_STATUS = _vs(
    "encounter-status", "planned arrived triaged in-progress onleave finished cancelled entered-in-error unknown"
)
ENCOUNTER_LOCATION_STATUS = _vs("encounter-location-status", "planned active reserved completed")
EVENT_STATUS = _vs(
    "event-status", "preparation in-progress not-done on-hold stopped completed entered-in-error unknown"
)
IMMUNIZATION_STATUS = _vs("immunization-status", "completed entered-in-error not-done")
MEDICATION_REQUEST_STATUS = _vs(
    "medicationrequest-status", "active on-hold cancelled completed entered-in-error stopped draft unknown"
)
MEDICATION_REQUEST_INTENT = _vs(
    "medicationrequest-intent",
    "proposal plan order original-order reflex-order filler-order instance-order option",
)
MEDICATION_STATEMENT_STATUS = _vs(
    "medication-statement-status", "active completed entered-in-error intended stopped on-hold unknown not-taken"
)
MEDICATION_ADMIN_STATUS = _vs(
    "medication-admin-status", "in-progress not-done on-hold completed entered-in-error stopped unknown"
)
MEDICATION_DISPENSE_STATUS = _vs(
    "medicationdispense-status",
    "preparation in-progress cancelled on-hold completed entered-in-error stopped declined unknown",
)
MEDICATION_STATUS = _vs("medication-status", "active inactive entered-in-error")
REQUEST_STATUS = _vs("request-status", "draft active on-hold revoked completed entered-in-error unknown")
REQUEST_INTENT = _vs(
    "request-intent", "proposal plan directive order original-order reflex-order filler-order instance-order option"
)
REQUEST_PRIORITY = _vs("request-priority", "routine urgent asap stat")
CARE_PLAN_INTENT = _vs("care-plan-intent", "proposal plan order option")
CARE_PLAN_ACTIVITY_STATUS = _vs(
    "care-plan-activity-status",
    "not-started scheduled in-progress on-hold completed cancelled stopped unknown entered-in-error",
)
CARE_PLAN_ACTIVITY_KIND = _vs(
    "care-plan-activity-kind",
    "Appointment CommunicationRequest DeviceRequest MedicationRequest NutritionOrder Task ServiceRequest "
    "VisionPrescription",
)
CARE_TEAM_STATUS = _vs("care-team-status", "proposed active suspended inactive entered-in-error")
GOAL_STATUS = _vs(
    "goal-status", "proposed planned accepted active on-hold completed cancelled entered-in-error rejected"
)
FM_STATUS = _vs("fm-status", "active cancelled draft entered-in-error")
EOB_STATUS = _vs("explanationofbenefit-status", "active cancelled draft entered-in-error")
CLAIM_USE = _vs("claim-use", "claim preauthorization predetermination")
REMITTANCE_OUTCOME = _vs("remittance-outcome", "queued complete error partial")
ALLERGY_CLINICAL = _vs(
    "allergyintolerance-clinical", "active inactive resolved", TERMINOLOGY + "allergyintolerance-clinical"
)
ALLERGY_VERIFICATION = _vs(
    "allergyintolerance-verification",
    "unconfirmed confirmed refuted entered-in-error",
    TERMINOLOGY + "allergyintolerance-verification",
)
ALLERGY_TYPE = _vs("allergy-intolerance-type", "allergy intolerance")
ALLERGY_CATEGORY = _vs("allergy-intolerance-category", "food medication environment biologic")
ALLERGY_CRITICALITY = _vs("allergy-intolerance-criticality", "low high unable-to-assess")
CONDITION_CLINICAL = _vs(
    "condition-clinical", "active recurrence relapse inactive remission resolved", TERMINOLOGY + "condition-clinical"
)
CONDITION_VERIFICATION = _vs(
    "condition-ver-status",
    "unconfirmed provisional differential confirmed refuted entered-in-error",
    TERMINOLOGY + "condition-ver-status",
)
IMAGING_STUDY_STATUS = _vs("imagingstudy-status", "registered available cancelled entered-in-error unknown")
CONSENT_STATE = _vs("consent-state-codes", "draft proposed active rejected inactive entered-in-error")
CONSENT_PROVISION_TYPE = _vs("consent-provision-type", "deny permit")
TASK_STATUS = _vs(
    "task-status",
    "draft requested received accepted rejected ready cancelled in-progress on-hold failed completed entered-in-error",
)
TASK_INTENT = _vs(
    "task-intent", "unknown proposal plan order original-order reflex-order filler-order instance-order option"
)
AUDIT_EVENT_ACTION = _vs("audit-event-action", "C R U D E")
AUDIT_EVENT_OUTCOME = _vs("audit-event-outcome", "0 4 8 12")
PROVENANCE_ENTITY_ROLE = _vs("provenance-entity-role", "derivation revision quotation source removal")
ADMINISTRATIVE_GENDER = _vs("administrative-gender", "male female other unknown")
LINK_TYPE = _vs("link-type", "replaced-by replaces refer seealso")
DOCUMENT_REFERENCE_STATUS = _vs("document-reference-status", "current superseded entered-in-error")
COMPOSITION_STATUS = _vs("composition-status", "preliminary final amended entered-in-error")
APPOINTMENT_STATUS = _vs(
    "appointmentstatus",
    "proposed pending booked arrived fulfilled cancelled noshow entered-in-error checked-in waitlist",
)
DEVICE_STATUS = _vs("device-status", "active inactive entered-in-error unknown")
SPECIMEN_STATUS = _vs("specimen-status", "available unavailable unsatisfactory entered-in-error")
HISTORY_STATUS = _vs("history-status", "partial completed entered-in-error health-unknown")
FLAG_STATUS = _vs("flag-status", "active inactive entered-in-error")
EPISODE_OF_CARE_STATUS = _vs(
    "episode-of-care-status", "planned waitlist active onhold finished cancelled entered-in-error"
)
LIST_STATUS = _vs("list-status", "current retired entered-in-error")
LIST_MODE = _vs("list-mode", "working snapshot changes")
QUESTIONNAIRE_ANSWERS_STATUS = _vs(
    "questionnaire-answers-status", "in-progress completed amended entered-in-error stopped"
)
CLINICAL_IMPRESSION_STATUS = _vs("clinicalimpression-status", "in-progress completed entered-in-error")
LOCATION_STATUS = _vs("location-status", "active suspended inactive")
LOCATION_MODE = _vs("location-mode", "instance kind")
NARRATIVE_STATUS = _vs("narrative-status", "generated extensions additional empty")
ADVERSE_EVENT_ACTUALITY = _vs("adverse-event-actuality", "actual potential")


@dataclass(frozen=True)
class Binding:
    """A REQUIRED binding at `path`: element names from the resource root; "[]" marks a repeating element."""

    path: str
    value_set: ValueSet
    steps: tuple[tuple[str, bool], ...] = ()

    def __post_init__(self) -> None:
        steps = tuple((step.removesuffix("[]"), step.endswith("[]")) for step in self.path.split("."))
        object.__setattr__(self, "steps", steps)


def _bind(*pairs: tuple[str, ValueSet]) -> tuple[Binding, ...]:
    return tuple(Binding(path, value_set) for path, value_set in pairs)


# Every DomainResource may carry a narrative, whose status is bound REQUIRED.
COMMON_BINDINGS = _bind(("text.status", NARRATIVE_STATUS))

BINDINGS: dict[str, tuple[Binding, ...]] = {
    "AdverseEvent": _bind(("actuality", ADVERSE_EVENT_ACTUALITY)),
    "AllergyIntolerance": _bind(
        ("clinicalStatus", ALLERGY_CLINICAL),
        ("verificationStatus", ALLERGY_VERIFICATION),
        ("type", ALLERGY_TYPE),
        ("category[]", ALLERGY_CATEGORY),
        ("criticality", ALLERGY_CRITICALITY),
    ),
    "Appointment": _bind(("status", APPOINTMENT_STATUS)),
    "AuditEvent": _bind(("action", AUDIT_EVENT_ACTION), ("outcome", AUDIT_EVENT_OUTCOME)),
    "CarePlan": _bind(
        ("status", REQUEST_STATUS),
        ("intent", CARE_PLAN_INTENT),
        ("activity[].detail.status", CARE_PLAN_ACTIVITY_STATUS),
        ("activity[].detail.kind", CARE_PLAN_ACTIVITY_KIND),
    ),
    "CareTeam": _bind(("status", CARE_TEAM_STATUS)),
    "Claim": _bind(("status", FM_STATUS), ("use", CLAIM_USE)),
    "ClaimResponse": _bind(("status", FM_STATUS), ("use", CLAIM_USE), ("outcome", REMITTANCE_OUTCOME)),
    "ClinicalImpression": _bind(("status", CLINICAL_IMPRESSION_STATUS)),
    "Communication": _bind(("status", EVENT_STATUS), ("priority", REQUEST_PRIORITY)),
    "CommunicationRequest": _bind(("status", REQUEST_STATUS), ("priority", REQUEST_PRIORITY)),
    "Composition": _bind(("status", COMPOSITION_STATUS)),
    "Condition": _bind(("clinicalStatus", CONDITION_CLINICAL), ("verificationStatus", CONDITION_VERIFICATION)),
    "Consent": _bind(("status", CONSENT_STATE), ("provision.type", CONSENT_PROVISION_TYPE)),
    "Coverage": _bind(("status", FM_STATUS)),
    "DetectedIssue": _bind(("status", OBSERVATION_STATUS)),
    "Device": _bind(("status", DEVICE_STATUS)),
    "DeviceRequest": _bind(("status", REQUEST_STATUS), ("intent", REQUEST_INTENT), ("priority", REQUEST_PRIORITY)),
    "DiagnosticReport": _bind(("status", DIAGNOSTIC_REPORT_STATUS)),
    "DocumentReference": _bind(("status", DOCUMENT_REFERENCE_STATUS), ("docStatus", COMPOSITION_STATUS)),
    "Encounter": _bind(
        ("status", ENCOUNTER_STATUS),
        ("statusHistory[].status", ENCOUNTER_STATUS),
        ("location[].status", ENCOUNTER_LOCATION_STATUS),
    ),
    "EpisodeOfCare": _bind(("status", EPISODE_OF_CARE_STATUS), ("statusHistory[].status", EPISODE_OF_CARE_STATUS)),
    "ExplanationOfBenefit": _bind(("status", EOB_STATUS), ("use", CLAIM_USE), ("outcome", REMITTANCE_OUTCOME)),
    "FamilyMemberHistory": _bind(("status", HISTORY_STATUS)),
    "Flag": _bind(("status", FLAG_STATUS)),
    "Goal": _bind(("lifecycleStatus", GOAL_STATUS)),
    "ImagingStudy": _bind(("status", IMAGING_STUDY_STATUS)),
    "Immunization": _bind(("status", IMMUNIZATION_STATUS)),
    "List": _bind(("status", LIST_STATUS), ("mode", LIST_MODE)),
    "Location": _bind(("status", LOCATION_STATUS), ("mode", LOCATION_MODE)),
    "Medication": _bind(("status", MEDICATION_STATUS)),
    "MedicationAdministration": _bind(("status", MEDICATION_ADMIN_STATUS)),
    "MedicationDispense": _bind(("status", MEDICATION_DISPENSE_STATUS)),
    "MedicationRequest": _bind(
        ("status", MEDICATION_REQUEST_STATUS),
        ("intent", MEDICATION_REQUEST_INTENT),
        ("priority", REQUEST_PRIORITY),
    ),
    "MedicationStatement": _bind(("status", MEDICATION_STATEMENT_STATUS)),
    "NutritionOrder": _bind(("status", REQUEST_STATUS), ("intent", REQUEST_INTENT)),
    "Observation": _bind(("status", OBSERVATION_STATUS)),
    "Patient": _bind(
        ("gender", ADMINISTRATIVE_GENDER), ("contact[].gender", ADMINISTRATIVE_GENDER), ("link[].type", LINK_TYPE)
    ),
    "Person": _bind(("gender", ADMINISTRATIVE_GENDER)),
    "Practitioner": _bind(("gender", ADMINISTRATIVE_GENDER)),
    "Procedure": _bind(("status", EVENT_STATUS)),
    "Provenance": _bind(("entity[].role", PROVENANCE_ENTITY_ROLE)),
    "QuestionnaireResponse": _bind(("status", QUESTIONNAIRE_ANSWERS_STATUS)),
    "RelatedPerson": _bind(("gender", ADMINISTRATIVE_GENDER)),
    "RiskAssessment": _bind(("status", OBSERVATION_STATUS)),
    "ServiceRequest": _bind(("status", REQUEST_STATUS), ("intent", REQUEST_INTENT), ("priority", REQUEST_PRIORITY)),
    "Specimen": _bind(("status", SPECIMEN_STATUS)),
    "Task": _bind(("status", TASK_STATUS), ("intent", TASK_INTENT), ("priority", REQUEST_PRIORITY)),
}


def _located(resource: dict[str, Any], binding: Binding, prefix: str) -> list[tuple[Any, str]]:
    """The values at the binding's path, each with its FHIRPath-like expression."""
    found: list[tuple[Any, str]] = [(resource, prefix)]
    for name, repeats in binding.steps:
        step: list[tuple[Any, str]] = []
        for node, where in found:
            if type(node) is not dict:
                continue  # a wrong shape is the model validation's to report
            value = node.get(name)
            if value is None:
                continue
            if not repeats:
                step.append((value, f"{where}.{name}"))
            elif type(value) is list:
                step.extend((item, f"{where}.{name}[{i}]") for i, item in enumerate(value))
        found = step
        if not found:
            break
    return found


def _code_issue(value_set: ValueSet, where: str) -> OutcomeIssue:
    return OutcomeIssue(
        code="value",
        diagnostics=f"code is outside the REQUIRED value set {value_set.name} ({value_set.describe()})",
        expression=(where,),
    )


def _concept_issues(value_set: ValueSet, concept: Any, where: str) -> list[OutcomeIssue]:
    if type(concept) is not dict:
        return []
    codings = concept.get("coding")
    issues: list[OutcomeIssue] = []
    matched = False
    if type(codings) is list:
        for i, coding in enumerate(codings):
            if type(coding) is dict and coding.get("system") == value_set.system:
                if coding.get("code") in value_set.codes:
                    matched = True
                else:
                    issues.append(_code_issue(value_set, f"{where}.coding[{i}].code"))
    if not matched and not issues:
        issues.append(
            OutcomeIssue(
                code="value",
                diagnostics=f"a coding from {value_set.system} is required (value set {value_set.name})",
                expression=(where,),
            )
        )
    return issues


def binding_issues(resource: dict[str, Any], resource_type: str, prefix: str) -> list[OutcomeIssue]:
    """Every REQUIRED-binding violation of one resource (not its contained resources)."""
    issues: list[OutcomeIssue] = []
    for binding in BINDINGS.get(resource_type, ()) + COMMON_BINDINGS:
        value_set = binding.value_set
        for value, where in _located(resource, binding, prefix):
            if value_set.system is not None:
                issues.extend(_concept_issues(value_set, value, where))
            elif type(value) is str and value not in value_set.codes:
                issues.append(_code_issue(value_set, where))
    return issues
