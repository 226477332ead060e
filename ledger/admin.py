from __future__ import annotations

from django.contrib import admin

from ledger.models import Deployment, OutboxMessage, RelayerState


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    """Read-only: deployments are recorded by `manage.py deploy_contracts`, never edited by hand."""

    list_display = ("address", "chain_id", "block", "artifact_hash", "created_at")
    list_filter = ("chain_id",)
    readonly_fields = ("chain_id", "address", "deploy_tx", "block", "artifact_hash", "operator", "created_at")

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):
    """Read-only: the relay alone moves a message; an edited nonce or raw transaction could send a write twice."""

    list_display = (
        "id",
        "kind",
        "short_ref",
        "status",
        "attempts",
        "nonce",
        "tx_hash",
        "block_number",
        "next_attempt_at",
    )
    list_filter = ("kind", "status")
    search_fields = ("ref", "tx_hash")
    ordering = ("-id",)
    exclude = ("raw_tx",)  # opaque bytes; the hash identifies the transaction
    readonly_fields = (
        "kind",
        "ref",
        "payload",
        "status",
        "attempts",
        "next_attempt_at",
        "last_attempt_at",
        "last_error",
        "chain_id",
        "sender",
        "nonce",
        "tx_hash",
        "broadcast_at",
        "block_number",
        "created_at",
        "finished_at",
    )

    @admin.display(description="ref")
    def short_ref(self, obj: OutboxMessage) -> str:
        return obj.ref[:18]

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False


@admin.register(RelayerState)
class RelayerStateAdmin(admin.ModelAdmin):
    list_display = ("sender", "chain_id", "next_nonce")
    readonly_fields = ("chain_id", "sender", "next_nonce")

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False
