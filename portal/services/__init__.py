"""The portal's writes. Each composes domain services; none writes patient data itself.

Imports go through records.services.fhir_ingest, grants through consent.services,
erasure through consent.services.patient_record_erase. What is the portal's own is the
sign-in bookkeeping (failed attempts, the optional TOTP device).
"""

from __future__ import annotations

from portal.services.admin_log import (
    ADMIN_ACTIONS,
    ADMIN_CHANGE,
    ADMIN_PASSWORD,
    ADMIN_SECOND_FACTOR_REMOVE,
    account_admin_change_log,
)
from portal.services.erasure import record_erase
from portal.services.fhir_import import ImportRejected, ImportReport, issues_in_words, ndjson_as_batch, record_import
from portal.services.preferences import preference_time_zone_set, time_zone_valid
from portal.services.sign_in import (
    TOTP_SEED_BYTES,
    login_failure_record,
    login_failures_clear,
    login_failures_recent,
    login_is_throttled,
    totp_confirmed_device,
    totp_device_begin,
    totp_device_confirm,
    totp_devices_remove,
)
from portal.services.signup import (
    patient_record_ensure,
    patient_signup_confirm,
    patient_signup_request,
)

__all__ = [
    "ADMIN_ACTIONS",
    "ADMIN_CHANGE",
    "ADMIN_PASSWORD",
    "ADMIN_SECOND_FACTOR_REMOVE",
    "TOTP_SEED_BYTES",
    "ImportRejected",
    "ImportReport",
    "account_admin_change_log",
    "issues_in_words",
    "login_failure_record",
    "login_failures_clear",
    "login_failures_recent",
    "login_is_throttled",
    "ndjson_as_batch",
    "patient_record_ensure",
    "patient_signup_confirm",
    "patient_signup_request",
    "preference_time_zone_set",
    "record_erase",
    "record_import",
    "time_zone_valid",
    "totp_confirmed_device",
    "totp_device_begin",
    "totp_device_confirm",
    "totp_devices_remove",
]
