"""Studies and decisions in the Django admin: read-only, and never a record.

Requests, their states and every decision, runs with their sizes, commitments and reports, and
releases with their checks. Decisions are taken through the pages and the API (one service), so
nothing here is editable; no model shown holds a patient's record data, and participations and
cohort memberships are left out altogether.
"""

from __future__ import annotations

from django.contrib import admin

from research.models import AnalysisRun, OutputCheck, Release, Study, StudyDecision, StudyMember


class _ReadOnly(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False


class MemberInline(admin.TabularInline):  # type: ignore[type-arg]
    model = StudyMember
    fields = ("user", "role")
    readonly_fields = fields
    extra = 0
    can_delete = False


class DecisionInline(admin.TabularInline):  # type: ignore[type-arg]
    model = StudyDecision
    fields = ("at", "by", "from_state", "to_state", "reason", "spec_hash")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Study)
class StudyAdmin(_ReadOnly):
    list_display = ("title", "state", "version", "ends_at", "created_at")
    list_filter = ("state",)
    search_fields = ("title",)
    fields = ("title", "state", "version", "spec_hash", "spec", "conditions", "ends_at", "created_by", "created_at")
    readonly_fields = fields
    inlines = (MemberInline, DecisionInline)


@admin.register(StudyDecision)
class StudyDecisionAdmin(_ReadOnly):
    list_display = ("at", "study", "by", "from_state", "to_state")
    list_filter = ("to_state",)


@admin.register(AnalysisRun)
class AnalysisRunAdmin(_ReadOnly):
    list_display = ("created_at", "study", "analysis_id", "status", "cohort_size")
    list_filter = ("status", "analysis_id")
    fields = ("study", "analysis_id", "analysis_version", "code_hash", "params", "status", "status_reason",
              "cohort_size", "cohort_root", "report", "created_at", "finished_at")  # fmt: skip
    readonly_fields = fields


class CheckInline(admin.TabularInline):  # type: ignore[type-arg]
    model = OutputCheck
    fields = ("at", "checker", "approve", "comment")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Release)
class ReleaseAdmin(_ReadOnly):
    list_display = ("requested_at", "run", "status", "checks_needed", "released_at")
    list_filter = ("status",)
    fields = ("run", "status", "checks_needed", "requested_at", "released_at", "provenance")
    readonly_fields = fields
    inlines = (CheckInline,)
