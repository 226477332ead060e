from __future__ import annotations

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class PortalConfig(AppConfig):
    name = "portal"


class HealthLedgerAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with the hardened site (portal.admin_site) as the default `admin.site`."""

    default = False  # the portal app's own config stays PortalConfig
    default_site = "portal.admin_site.HealthLedgerAdminSite"
