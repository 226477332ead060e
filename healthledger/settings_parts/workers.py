"""Settings of the broker, the Celery workers and beat, and job dispatch; part of healthledger.settings.

Every name here is a setting of healthledger.settings (it imports them all), read from the
environment like the rest (.env.example lists each variable). Cohesive enough to stand alone: it
reads nothing of the other settings.
"""

from __future__ import annotations

from healthledger.lib.env import envbool, envfloat, envint, envstr

REDIS_URL = envstr("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SOFT_TIME_LIMIT = envint("CELERY_TASK_SOFT_TIME_LIMIT", 120, minimum=1)
CELERY_TASK_TIME_LIMIT = envint("CELERY_TASK_TIME_LIMIT", 150, minimum=1)
# Redis redelivers an unacknowledged task after this; it must exceed the hard time limit.
# Socket timeouts: a broker that stops answering without closing the connection (paused, partitioned)
# fails a publish after this instead of holding its thread forever.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT", 300, minimum=10),
    "socket_timeout": envint("CELERY_BROKER_SOCKET_TIMEOUT", 5, minimum=2),
    "socket_connect_timeout": envint("CELERY_BROKER_SOCKET_TIMEOUT", 5, minimum=2),
}
CELERY_BROKER_CONNECTION_TIMEOUT = envint("CELERY_BROKER_SOCKET_TIMEOUT", 5, minimum=2)
# Job dispatch (diagnostics/dispatch.py): the web tier's one bounded publish attempt, how long a process
# leaves publishing to the dispatcher after a failure, the dispatcher's tick, and how long an open job may
# go untouched before the sweeper looks for its broker message and re-dispatches a job whose message is gone.
JOB_PUBLISH_TIMEOUT_SECONDS = max(0.1, envfloat("JOB_PUBLISH_TIMEOUT_SECONDS", 1.0))
JOB_PUBLISH_BREAKER_SECONDS = envint("JOB_PUBLISH_BREAKER_SECONDS", 10, minimum=0)
JOB_DISPATCH_SECONDS = envint("JOB_DISPATCH_SECONDS", 5, minimum=1)
JOB_REDISPATCH_SECONDS = envint("JOB_REDISPATCH_SECONDS", 60, minimum=1)
CELERY_TASK_ALWAYS_EAGER = envbool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "audit-seal": {
        "task": "audit.tasks.access_log_seal_task",
        "schedule": float(envint("AUDIT_CHECKPOINT_SECONDS", 10, minimum=1)),
    },
    # Checks every sealing interval whether an anchor is due (AUDIT_ANCHOR_ENTRIES / AUDIT_ANCHOR_SECONDS).
    "audit-anchor": {
        "task": "audit.tasks.access_log_anchor_task",
        "schedule": float(envint("AUDIT_CHECKPOINT_SECONDS", 10, minimum=1)),
    },
    # Publishes jobs owed to the broker and re-dispatches open jobs whose broker message is gone.
    "diagnostics-job-dispatch": {
        "task": "diagnostics.tasks.job_dispatch_task",
        "schedule": float(envint("JOB_DISPATCH_SECONDS", 5, minimum=1)),
    },
    # The relay is also queued on commit by every outbox write; beat is the safety net and the retry clock.
    "ledger-outbox-relay": {
        "task": "ledger.tasks.outbox_relay_task",
        "schedule": float(envint("OUTBOX_RELAY_SECONDS", 2, minimum=1)),
    },
    # Deletes expired bulk exports (files and all) and publishes exports owed to the broker (api/bulk_export.py).
    "api-bulk-export-housekeeping": {"task": "api.tasks.bulk_export_housekeeping", "schedule": 30.0},
    # Closes studies past their end date (their patients' grants end with them anyway).
    "research-studies-close": {"task": "research.tasks.studies_close", "schedule": 3600.0},
    "research-change-notices": {"task": "research.tasks.change_notices_settle", "schedule": 3600.0},
    # Re-sends research runs and chunks a lost broker dropped (research/sweep.py).
    "research-runs-sweep": {"task": "research.tasks.runs_sweep", "schedule": 60.0},
    # Completes operator-assisted key resets once their public delay on chain has passed (consent/key_reset.py).
    "consent-key-resets-complete": {"task": "consent.tasks.key_resets_complete_task", "schedule": 3600.0},
    # Tells patients of refused attempts, clinicians' first reads and grants ending within a week (consent/alerts.py).
    "consent-patient-alerts": {
        "task": "consent.tasks.patient_alerts_task",
        "schedule": float(envint("PATIENT_ALERTS_SECONDS", 60, minimum=1)),
    },
}
