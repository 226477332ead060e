"""The Celery application. Tasks take ids only and are queued on commit."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "healthledger.settings")

app = Celery("healthledger")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
