from __future__ import annotations

from django.apps import AppConfig


class ConsentConfig(AppConfig):
    name = "consent"

    def ready(self) -> None:
        # Ledger sits below consent and never imports it: consent tells the outbox what to do
        # when its chain writes land or are refused.
        from consent import handlers
        from ledger.outbox import register_outbox_handler

        register_outbox_handler(
            "grant",
            on_confirmed=handlers.grant_landed,
            on_failed=handlers.grant_refused,
            on_reorged=handlers.grant_lost,
        )
        register_outbox_handler("revoke", on_confirmed=handlers.revocation_landed, on_reorged=handlers.revocation_lost)
        register_outbox_handler(
            "key_reset", on_confirmed=handlers.key_reset_landed, on_failed=handlers.key_reset_refused
        )
        register_outbox_handler(
            "key_reset_done", on_confirmed=handlers.key_reset_done_landed, on_failed=handlers.key_reset_refused
        )
