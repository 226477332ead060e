"""The portal's pages, mounted at the site root."""

from __future__ import annotations

from django.contrib.auth.views import LogoutView
from django.urls import path

from portal.views import account, ai, auth, clinician, keys, notices, patient, preferences, research, sharing, steward

app_name = "portal"

urlpatterns = [
    path("", auth.home, name="home"),
    path("signup/", auth.signup, name="signup"),
    path("signup/sent/", auth.signup_sent, name="signup_sent"),
    path("signup/confirm/<str:uidb64>/<str:token>/", auth.signup_confirm, name="signup_confirm"),
    path("login/", auth.login_view, name="login"),
    path("login/verify/", auth.login_verify, name="login_verify"),
    path("logout/", LogoutView.as_view(), name="logout"),
    path("account/security/", auth.security, name="security"),
    path("account/settings/", preferences.preferences, name="preferences"),
    path("account/password/", account.password_change, name="password_change"),
    path("account/password/changed/", account.password_change_done, name="password_change_done"),
    path("account/password/reset/", account.password_reset, name="password_reset"),
    path("account/password/reset/sent/", account.password_reset_sent, name="password_reset_sent"),
    path(
        "account/password/reset/<str:uidb64>/<str:token>/",
        account.password_reset_confirm,
        name="password_reset_confirm",
    ),
    path("account/password/reset/done/", account.password_reset_complete, name="password_reset_complete"),
    path("privacy/", account.privacy, name="privacy"),
    path("dashboard/", patient.dashboard, name="dashboard"),
    path("record/", patient.record, name="record"),
    path("record/import/", patient.record_import_view, name="record_import"),
    path("record/export/", patient.record_export, name="record_export"),
    path("record/timeline/<slug:view>/", patient.timeline, name="timeline"),
    path("record/charts/<slug:metric>.json", patient.chart_data, name="chart_data"),
    path("record/<str:resource_type>/<str:resource_id>/", patient.resource_detail, name="resource"),
    path("sharing/", sharing.sharing, name="sharing"),
    path("sharing/<str:grant_id>/revoke/", sharing.grant_revoke_view, name="grant_revoke"),
    path("keys/", keys.keys, name="keys"),
    path("keys/take/", keys.key_take, name="key_take"),
    path("keys/register/", keys.key_register, name="key_register"),
    path("access/", patient.access_log, name="access_log"),
    path("access/<int:entry_id>/", patient.access_proof, name="access_proof"),
    path("notifications/", notices.notifications, name="notifications"),
    path("notifications/read/", notices.notifications_read, name="notifications_read"),
    path("ai/", ai.ai, name="ai"),
    path("ai/run/", ai.ai_run, name="ai_run"),
    path("erase/", sharing.erase, name="erase"),
    path("erase/done/", sharing.erased, name="erased"),
    path("clinician/", clinician.clinician_home, name="clinician"),
    path("clinician/patients/<uuid:patient_id>/", clinician.clinician_patient, name="clinician_patient"),
    path(
        "clinician/patients/<uuid:patient_id>/<str:resource_type>/<str:resource_id>/",
        clinician.clinician_resource,
        name="clinician_resource",
    ),
    path("steward/break-glass/", steward.break_glass_list, name="steward_break_glass"),
    path("research/", research.research_home, name="research_home"),
    path("research/mine/", research.patient_research, name="patient_research"),
    path("research/studies/<uuid:study_id>/", research.study_card, name="study_card"),
    path("research/studies/<uuid:study_id>/join/", research.study_join, name="study_join"),
    path("research/studies/<uuid:study_id>/withdraw/", research.study_withdraw, name="study_withdraw"),
    path("research/my-studies/", research.research_studies, name="research_studies"),
    path("research/my-studies/new/", research.research_study_create, name="research_study_create"),
    path(
        "research/my-studies/<uuid:study_id>/state/",
        research.research_study_transition,
        name="research_study_transition",
    ),
    path("research/my-studies/<uuid:study_id>/run/", research.research_run, name="research_run"),
    path("research/runs/<uuid:run_id>/release/", research.research_release_request, name="research_release_request"),
    path(
        "research/releases/<uuid:release_id>.<str:fmt>",
        research.research_release_download,
        name="research_release_download",
    ),
    path("steward/research/", research.steward_research, name="steward_research"),
    path("steward/research/outputs/<uuid:release_id>/", research.steward_output_check, name="steward_output_check"),
    path(
        "steward/break-glass/<uuid:episode_id>/review/",
        steward.break_glass_review_view,
        name="steward_break_glass_review",
    ),
]
