"""A model's card, derived from its one declaration (ModelSpec and its InputSpecs): the documentation of what it
is for, whom it refuses, what it reads and which values it accepts. docs/diagnostic-models.md is this text."""

from __future__ import annotations

from diagnostics.inference.base import INPUT_LABELS, InputSpec, ModelSpec
from diagnostics.inference.valueset import value_set

SYSTEM_NAMES = {
    "http://loinc.org": "LOINC",
    "http://snomed.info/sct": "SNOMED CT",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
}


def _code(token: str) -> str:
    system, _, code = token.rpartition("|")
    return f"{SYSTEM_NAMES.get(system, system)} {code}"


def _reads(item: InputSpec) -> str:
    if item.resource_type == "Patient":
        return "Patient (birth date, gender)"
    if item.value_set is not None:
        held = value_set(item.value_set)
        return f"{item.resource_type} in value set `{held.id}` ({held.title}; {held.date})"
    codes = ", ".join(_code(token) for token in item.codes)
    return f"{item.resource_type} {codes}"


def _accepts(item: InputSpec) -> str:
    if item.limits is None:
        return item.unit or "-"
    low, high = item.limits
    return f"{low:g}-{high:g} {item.unit} ({item.limits_basis})"


def model_card(spec: ModelSpec) -> str:
    """The model's card in Markdown."""
    lines = [
        f"## {spec.title}",
        "",
        f"`{spec.id}` version {spec.version}. Output {_code(spec.output_code)}"
        + (f", over {spec.horizon_years} years" if spec.horizon_years else "")
        + (
            f"; also released as Observation `{spec.observation[1]}` in `{spec.observation[2]}`"
            if spec.observation
            else ""
        )
        + ".",
        "",
        f"**Population.** {spec.population or 'Not declared.'}",
        "",
        f"**Intended use.** {spec.intended_use}",
        "",
        "| input | reads | window | accepts | needed |",
        "|---|---|---|---|---|",
    ]
    for item in spec.inputs:
        label = INPUT_LABELS.get(item.name, item.name.replace("_", " "))
        window = "any time" if item.lookback_days is None else f"{item.lookback_days} days"
        needed = "yes" if item.required else "no"
        lines.append(f"| {label} | {_reads(item)} | {window} | {_accepts(item)} | {needed} |")
    return "\n".join(lines) + "\n"


def value_set_card(name: str) -> str:
    """A value set's source and date, in Markdown."""
    held = value_set(name)
    return f"- `{held.id}` ({held.date}): {held.title}. Source: {held.source}\n"


def models_document(specs: list[ModelSpec]) -> str:
    """Every model's card and every value set they use: the whole of docs/diagnostic-models.md."""
    used = sorted({item.value_set for spec in specs for item in spec.inputs if item.value_set})
    parts = [
        "# Diagnostic models\n",
        "Generated from the models' declarations by `manage.py diagnostics_models_doc --write`; do not edit by hand.\n",
        *(model_card(spec) for spec in specs),
        "## Value sets\n",
        *(value_set_card(name) for name in used),
    ]
    return "\n".join(parts)
