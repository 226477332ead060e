"""What erasure does to a patient's research participation (registered with consent.services at start-up).

Erasure revokes her grants through consent; here her participations end too, so no study
lists her as a participant, invites her again or freezes her into a later cohort.
"""

from __future__ import annotations

from django.utils import timezone

from records.models import Patient
from research.models import Participation


def participations_end(patient: Patient) -> int:
    """Mark every live participation of the patient withdrawn; returns how many."""
    return Participation.objects.filter(patient=patient, withdrawn_at__isnull=True).update(withdrawn_at=timezone.now())
