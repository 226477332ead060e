from __future__ import annotations

from django.apps import AppConfig


class ResearchConfig(AppConfig):
    name = "research"

    def ready(self) -> None:
        from consent.services import erasure_step_register
        from research.erasure import participations_end

        erasure_step_register(participations_end)
