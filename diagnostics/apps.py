from __future__ import annotations

from django.apps import AppConfig


class DiagnosticsConfig(AppConfig):
    name = "diagnostics"

    def ready(self) -> None:
        from django.conf import settings

        from diagnostics.inference.registry import configure

        configure(news2_window_minutes=settings.DIAGNOSTICS_NEWS2_WINDOW_MINUTES)

        from consent.services import erasure_step_register
        from diagnostics.erasure import jobs_scrub

        erasure_step_register(jobs_scrub)
