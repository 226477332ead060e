"""A completed export's files: the manifest's list, and each file's lines through the gate at download."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from django.db.models import Sum

from api.bulk_models import ExportJob, ExportSegment
from consent import gate


@dataclass(frozen=True)
class OutputFile:
    resource_type: str
    count: int


def _caller(job: ExportJob) -> gate.Caller:
    return gate.Caller(actor=job.requester, purpose=job.purpose, patient_context=job.patient_context)


def export_outputs(*, job: ExportJob) -> list[OutputFile]:
    """The manifest's files as a download would serve them now: per type, only the patients still covered.

    Each patient is decided again when the manifest is served, by the download's own rule
    (consent.gate.export_patients_covered): a grant revoked or expired since the export ran, or one no
    longer covering a type, takes that patient's segments out of the count, and a type left with none
    is not listed. Deciding opens nothing, so nothing is logged here; each download logs its own.
    """
    rows = list(
        ExportSegment.objects.filter(job_id=job.pk)
        .values("resource_type", "patient_id")
        .annotate(count=Sum("count"))
        .order_by("resource_type")
    )
    types = sorted({row["resource_type"] for row in rows})
    patients = {row["patient_id"] for row in rows}
    covered = gate.export_patients_covered(caller=_caller(job), patient_ids=patients, resource_types=types)
    counts: dict[str, int] = {}
    for row in rows:
        if row["patient_id"] in covered[row["resource_type"]]:
            counts[row["resource_type"]] = counts.get(row["resource_type"], 0) + row["count"]
    return [OutputFile(resource_type=t, count=c) for t, c in sorted(counts.items()) if c > 0]


def export_file_lines(*, job: ExportJob, resource_type: str) -> Iterator[bytes]:
    """A file's ndjson for its requester, through the gate: each patient in it decided again now, and logged.

    One opened segment at a time (flat memory); a patient whose grant no longer covers the type, or whose
    record was erased, is left out.
    """
    caller = _caller(job)
    segments = [
        gate.SealedSegment(key=pk, patient_id=patient_id, seq=seq)
        for pk, patient_id, seq in ExportSegment.objects.filter(job_id=job.pk, resource_type=resource_type)
        .order_by("seq")
        .values_list("pk", "patient_id", "seq")
    ]
    return gate.export_file_open(
        file=gate.ExportFile(caller=caller, export_id=job.pk, resource_type=resource_type),
        segments=segments,
        load=_segment_sealed,
    )


def _segment_sealed(key: int) -> bytes | None:
    sealed = ExportSegment.objects.filter(pk=key).values_list("sealed", flat=True).first()
    return None if sealed is None else bytes(sealed)
