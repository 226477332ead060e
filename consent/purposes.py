"""HL7 v3 PurposeOfUse codes the project accepts, and the actions a grant can allow."""

from __future__ import annotations

from django.db import models

PURPOSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"


class Purpose(models.TextChoices):
    TREAT = "TREAT", "Treatment"
    ETREAT = "ETREAT", "Emergency treatment (break-glass)"
    CAREMGT = "CAREMGT", "Care management"
    HRESCH = "HRESCH", "Healthcare research"
    CLINTRCH = "CLINTRCH", "Clinical trial research"
    PATRQT = "PATRQT", "Patient requested"
    PUBHLTH = "PUBHLTH", "Public health"
    HPAYMT = "HPAYMT", "Healthcare payment"
    HOPERAT = "HOPERAT", "Healthcare operations"


class Action(models.TextChoices):
    READ = "read", "Read"
    WRITE = "write", "Write"
    RUN_MODEL = "run-model", "Run an AI model"


# A patient may grant these purposes; PATRQT is the patient's own access and ETREAT is break-glass.
GRANTABLE_PURPOSES = frozenset(
    {Purpose.TREAT, Purpose.CAREMGT, Purpose.HRESCH, Purpose.CLINTRCH, Purpose.PUBHLTH, Purpose.HPAYMT, Purpose.HOPERAT}
)
ALL_RESOURCE_TYPES = "*"
