from __future__ import annotations

from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"

    def ready(self) -> None:
        # Imported here, not at module level: ledger.outbox loads models, which app loading must finish first.
        from audit import handlers
        from ledger.outbox import register_outbox_handler

        register_outbox_handler(
            "anchor",
            on_confirmed=handlers.anchor_landed,
            on_failed=handlers.anchor_refused,
            on_reorged=handlers.anchor_lost,
        )
