"""Value sets: the diagnoses and drugs a model recognises, shipped as data files with their source and date.

Each file under valuesets/ names where its codes come from and when they were
taken. A Condition matches by SNOMED CT code or by an ICD-10-CM code inside one
of the file's category ranges (I20-I25 holds I21.9 and I25.10); a
MedicationRequest matches by RxNorm ingredient or clinical-drug code, or by an
ingredient (or brand) named as a whole word in a coding's display or the
concept's text, since no clinical drug list stays complete. A file may also list
concepts of any system (CPT, ICD-10-PCS, SNOMED CT) by class ("dialysis",
"kidney_transplant"), and give an ICD-10-CM range a class: a match then says
which class it found. The project ships no terminology server: SNOMED CT
descendants are the concepts listed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


@dataclass(frozen=True)
class Match:
    """Why a concept is in the value set: the matched token, a readable name, and the drug class if any."""

    token: str  # "system|code" that matched, or "text|<ingredient>" for a name match
    display: str
    klass: str = ""


@dataclass(frozen=True)
class ValueSet:
    id: str
    title: str
    source: str
    date: str
    snomed: dict[str, str] = field(default_factory=dict)
    icd10cm: tuple[tuple[str, str, str, str], ...] = ()  # (from, to, display, class), dots removed, upper case
    rxnorm: dict[str, tuple[str, str]] = field(default_factory=dict)  # code -> (name, class)
    names: dict[str, tuple[str, str]] = field(default_factory=dict)  # lower-case word -> (ingredient, class)
    concepts: dict[str, tuple[str, str]] = field(default_factory=dict)  # "system|code" -> (display, class)

    def match(self, concept: Any) -> Match | None:
        """The first coding (or the text) of a CodeableConcept that this value set holds."""
        if type(concept) is not dict:
            return None
        codings = [c for c in concept.get("coding") or () if type(c) is dict]
        for coding in codings:
            found = self._coded(coding)
            if found is not None:
                return found
        texts = [c.get("display") for c in codings] + [concept.get("text")]
        for text in texts:
            found = self._named(text)
            if found is not None:
                return found
        return None

    def _coded(self, coding: dict[str, Any]) -> Match | None:
        system, code = coding.get("system"), coding.get("code")
        if type(code) is not str:
            return None
        token = f"{system}|{code}"
        if token in self.concepts:
            display, klass = self.concepts[token]
            return Match(token, display, klass)
        if system == SNOMED and code in self.snomed:
            return Match(token, self.snomed[code])
        if system == RXNORM and code in self.rxnorm:
            name, klass = self.rxnorm[code]
            return Match(token, name, klass)
        if system == ICD10CM:
            compact = code.replace(".", "").upper()
            for low, high, display, klass in self.icd10cm:
                if low <= compact[: len(low)] and compact[: len(high)] <= high:
                    return Match(token, f"{code} ({display})", klass)
        return None

    def _named(self, text: Any) -> Match | None:
        if type(text) is not str or not self.names:
            return None
        for word in _WORD.findall(text.lower()):
            if word in self.names:
                ingredient, klass = self.names[word]
                return Match(f"text|{ingredient}", ingredient, klass)
        return None


_WORD = re.compile(r"[a-z]+")


def _compact(code: str) -> str:
    return code.replace(".", "").upper()


def _build(data: dict[str, Any]) -> ValueSet:
    rxnorm: dict[str, tuple[str, str]] = {}
    names: dict[str, tuple[str, str]] = {}
    for klass, ingredients in (data.get("classes") or {}).items():
        for name, code in ingredients.items():
            rxnorm[code] = (name, klass)
            names[name] = (name, klass)
    for brand, ingredient in (data.get("brands") or {}).items():
        names[brand] = (ingredient, names[ingredient][1])
    for code, display in (data.get("clinical_drugs") or {}).items():
        ingredient = next((w for w in _WORD.findall(display.lower()) if w in names), None)
        if ingredient is None:
            raise ValueError(f"value set {data['id']}: clinical drug {code} names no listed ingredient")
        rxnorm[code] = (display, names[ingredient][1])
    return ValueSet(
        id=data["id"],
        title=data["title"],
        source=data["source"],
        date=data["date"],
        snomed=dict(data.get("snomed") or {}),
        icd10cm=tuple(
            (_compact(r["from"]), _compact(r["to"]), r["display"], r.get("class", ""))
            for r in data.get("icd10cm") or ()
        ),
        rxnorm=rxnorm,
        names=names,
        concepts={
            f"{c['system']}|{c['code']}": (c["display"], klass)
            for klass, listed in (data.get("concepts") or {}).items()
            for c in listed
        },
    )


@cache
def value_set(name: str) -> ValueSet:
    """The value set shipped as valuesets/<name>.json (packaged with the code, read once per process)."""
    raw = (resources.files("diagnostics.inference") / "valuesets" / f"{name}.json").read_text(encoding="utf-8")
    return _build(json.loads(raw))
