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


def export_outputs(*, job: ExportJob) -> list[OutputFile]:
    """The manifest's files: one per exported type that has any resource, with its count."""
    rows = (
        ExportSegment.objects.filter(job_id=job.pk)
        .values("resource_type")
        .annotate(count=Sum("count"))
        .order_by("resource_type")
    )
    return [OutputFile(resource_type=row["resource_type"], count=row["count"]) for row in rows]


def export_file_lines(*, job: ExportJob, resource_type: str) -> Iterator[bytes]:
    """A file's ndjson for its requester, through the gate: each patient in it decided again now, and logged.

    One opened segment at a time (flat memory); a patient whose grant no longer covers the type, or whose
    record was erased, is left out.
    """
    caller = gate.Caller(actor=job.requester, purpose=job.purpose, patient_context=job.patient_context)
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
