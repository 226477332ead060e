"""HealthLedger settings: one module, driven by the environment (see .env.example).

A cohesive block may live in healthledger/settings_parts/, imported whole where it belongs here
(the broker and workers: settings_parts/workers.py); its names are settings of this module all the same.

Defaults work out of the box for development: SQLite under var/, key files under
var/keys/, Redis at REDIS_URL. With DEBUG off, missing secrets are an error.
"""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from healthledger.lib.env import database_from_url, envbool, envint, envstr

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(envstr("HEALTHLEDGER_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = envbool("DJANGO_DEBUG", True)
SECRET_KEY = envstr("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off")
    SECRET_KEY = "dev-only-insecure-secret-key-do-not-use-in-production"

ALLOWED_HOSTS = [h for h in envstr("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver").split(",") if h]

INSTALLED_APPS = [
    # The admin with a required second factor and throttled sign-in (portal/admin_site.py).
    "portal.apps.HealthLedgerAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "oauth2_provider",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "accounts",
    "ledger",
    "audit",
    "records",
    "consent",
    "diagnostics",
    "research",
    "api",
    "portal",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files straight from gunicorn (make run); right after SecurityMiddleware, as WhiteNoise documents.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Cache-Control: no-store on the APIs and on every page of a signed-in user (healthledger/middleware.py).
    "healthledger.middleware.NoStoreMiddleware",
    # The middleware below marked PageOnly runs for browser pages and steps aside for API_PATH_PREFIXES,
    # where a bearer token is the only credential (healthledger/middleware.py).
    "healthledger.middleware.ApiHeadersMiddleware",
    # CORS for registered browser origins on /fhir and the token endpoint, preflights answered (api/cors.py).
    "api.cors.CorsMiddleware",
    # Content-Security-Policy on every page (the portal runs no inline script or style).
    "healthledger.middleware.PageOnlyCSPMiddleware",
    "healthledger.middleware.PageOnlySessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "healthledger.middleware.PageOnlyCsrfViewMiddleware",
    "healthledger.middleware.PageOnlyAuthenticationMiddleware",
    # Marks a session whose second factor (TOTP) was checked: request.user.is_verified().
    "healthledger.middleware.PageOnlyOTPMiddleware",
    "healthledger.middleware.PageOnlyMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# Token-authenticated APIs: no session, cookie or CSRF middleware runs for them. /api/ is not here:
# its JSON endpoints also accept the portal's session.
API_PATH_PREFIXES = ["/fhir"]
# Answers under these never go to a cache (no-store); pages of a signed-in user never do either.
NO_STORE_PATH_PREFIXES = ["/fhir", "/api/", "/oauth/", "/admin/"]

ROOT_URLCONF = "healthledger.urls"
WSGI_APPLICATION = "healthledger.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

_database_url = envstr("DATABASE_URL")
if _database_url:
    DATABASES = {"default": database_from_url(_database_url)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "healthledger.sqlite3"),
            # WAL lets the web server and the worker read while the other writes. IMMEDIATE transactions take
            # the write lock at BEGIN and wait for it (timeout): a deferred one that reads and then writes gets
            # "database is locked" at once when another process writes (two worker processes did, every time).
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
            },
        }
    }
DATABASES["default"]["CONN_MAX_AGE"] = envint("DATABASE_CONN_MAX_AGE", 60, minimum=0)
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# A kept connection is pinged before a request or task reuses it and replaced when the server dropped it
# (PostgreSQL restarted): without it, each web thread and pool process failed its first request after.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # The few fixed statements every API request runs go through healthledger.lib.db.prepared_cursor:
    # PostgreSQL plans them once per connection. The ORM's client-side binding never prepares. Off
    # (DATABASE_PREPARED_STATEMENTS=false) behind a pooler that cannot keep prepared statements.
    _options: dict[str, object] = DATABASES["default"].setdefault("OPTIONS", {})  # type: ignore[assignment]
    _options["prepare_threshold"] = 2 if envbool("DATABASE_PREPARED_STATEMENTS", True) else None

AUTH_USER_MODEL = "accounts.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# Fixed at import: pytest-django turns DEBUG off for tests, and WhiteNoise would then want a collected STATIC_ROOT.
WHITENOISE_AUTOREFRESH = DEBUG

# Largest request body accepted anywhere; FHIR bundles above it get 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = envint("HEALTHLEDGER_MAX_BODY_BYTES", 20 * 1024 * 1024, minimum=1024)

# --- Broker and workers: healthledger/settings_parts/workers.py ------------------
from healthledger.settings_parts.workers import *  # noqa: E402, F403 - its settings become this module's

# --- Diagnostics ------------------------------------------------------------------
# NEWS2 scores one observation set: every vital sign within this many minutes of the newest one.
DIAGNOSTICS_NEWS2_WINDOW_MINUTES = envint("DIAGNOSTICS_NEWS2_WINDOW_MINUTES", 60, minimum=1)

# --- Research disclosure control (research/disclosure.py; each rule's id is in every output's report) ---
RESEARCH_SDC_MIN_COHORT = envint("RESEARCH_SDC_MIN_COHORT", 20, minimum=20)
RESEARCH_SDC_COUNT_THRESHOLD = envint("RESEARCH_SDC_COUNT_THRESHOLD", 10, minimum=10)
RESEARCH_SDC_ROUNDING = envint("RESEARCH_SDC_ROUNDING", 5, minimum=1)
RESEARCH_SDC_PERCENT_THRESHOLD = envint("RESEARCH_SDC_PERCENT_THRESHOLD", 10, minimum=10)
RESEARCH_SDC_STAT_MIN_N = envint("RESEARCH_SDC_STAT_MIN_N", 10, minimum=10)
RESEARCH_SDC_DIFFERENCING = envint("RESEARCH_SDC_DIFFERENCING", 10, minimum=1)
RESEARCH_SDC_REGRESSION_DF = envint("RESEARCH_SDC_REGRESSION_DF", 10, minimum=10)
# Feasibility counts a researcher may ask per day (research/feasibility.py); a repeated query costs none.
RESEARCH_FEASIBILITY_QUOTA = envint("RESEARCH_FEASIBILITY_QUOTA", 20, minimum=0)
# A run start or chunk whose message is not done this long after it was sent is sent again (research/sweep.py).
RESEARCH_REDISPATCH_SECONDS = envint("RESEARCH_REDISPATCH_SECONDS", 300, minimum=30)

# --- Keys (never in the database) -----------------------------------------------
KEYS_DIR = Path(envstr("HEALTHLEDGER_KEYS_DIR", str(VAR_DIR / "keys")))
# Base64 (urlsafe) 32-byte keys. When unset, key files under KEYS_DIR are created on first use.
HEALTHLEDGER_MASTER_KEY = envstr("HEALTHLEDGER_MASTER_KEY")
HEALTHLEDGER_INDEX_KEY = envstr("HEALTHLEDGER_INDEX_KEY")
HEALTHLEDGER_AUDIT_KEY = envstr("HEALTHLEDGER_AUDIT_KEY")
HEALTHLEDGER_PSEUDONYM_KEY = envstr("HEALTHLEDGER_PSEUDONYM_KEY")
# Keys the stored form of session ids and seals TOTP seeds (healthledger/lib/account_secrets.py).
HEALTHLEDGER_ACCOUNT_KEY = envstr("HEALTHLEDGER_ACCOUNT_KEY")
if not DEBUG and not (HEALTHLEDGER_MASTER_KEY or envbool("HEALTHLEDGER_ALLOW_KEY_FILES", False)):
    raise ImproperlyConfigured(
        "HEALTHLEDGER_MASTER_KEY must be set when DJANGO_DEBUG is off "
        "(or set HEALTHLEDGER_ALLOW_KEY_FILES=true to keep keys in files under HEALTHLEDGER_KEYS_DIR)"
    )

# The patient key store: each patient key's second half lives here, never in the database, so a
# database backup opens nothing (records/keystore.py). `file`: a SQLite file under KEYS_DIR.
HEALTHLEDGER_KEY_STORE = envstr("HEALTHLEDGER_KEY_STORE", "file")
HEALTHLEDGER_KEY_STORE_PATH = envstr("HEALTHLEDGER_KEY_STORE_PATH")
# How long the operator keeps backups of the key store: an erased key is gone from every copy after this.
HEALTHLEDGER_KEY_BACKUP_DAYS = envint("HEALTHLEDGER_KEY_BACKUP_DAYS", 30, minimum=0)

# --- FHIR ingest limits ------------------------------------------------------------
FHIR_MAX_DOCUMENT_BYTES = envint("FHIR_MAX_DOCUMENT_BYTES", 20 * 1024 * 1024, minimum=1024)
FHIR_MAX_DEPTH = envint("FHIR_MAX_DEPTH", 32, minimum=4)
FHIR_MAX_BUNDLE_ENTRIES = envint("FHIR_MAX_BUNDLE_ENTRIES", 20000, minimum=1)

# --- Access log -------------------------------------------------------------------
AUDIT_CHECKPOINT_ENTRIES = envint("AUDIT_CHECKPOINT_ENTRIES", 4096, minimum=1)
AUDIT_CHECKPOINT_SECONDS = envint("AUDIT_CHECKPOINT_SECONDS", 10, minimum=1)
# Anchor the sealed log on chain once this many entries wait, or once the oldest waiting checkpoint is this old.
AUDIT_ANCHOR_ENTRIES = envint("AUDIT_ANCHOR_ENTRIES", 4096, minimum=1)
AUDIT_ANCHOR_SECONDS = envint("AUDIT_ANCHOR_SECONDS", 60, minimum=1)
# The maximum merge delay: every entry is sealed and anchored within this, or verify_access_log fails
# (audit/exposure.py). Above sealing plus anchoring intervals, with room for a short chain outage.
AUDIT_MAX_MERGE_DELAY_SECONDS = envint("AUDIT_MAX_MERGE_DELAY_SECONDS", 600, minimum=1)
# Where `manage.py witness_access_log` keeps the last tree head it accepted: outside the database (in
# production, on storage the database's operators cannot write).
AUDIT_WITNESS_FILE = envstr("AUDIT_WITNESS_FILE", str(VAR_DIR / "witness" / "access-log.json"))

# --- Chain ----------------------------------------------------------------------
CHAIN_RPC_URL = envstr("CHAIN_RPC_URL")
CHAIN_CONFIRMATIONS = envint("CHAIN_CONFIRMATIONS", 1, minimum=0)
# "rpc" talks to CHAIN_RPC_URL; "tester" runs an in-process EVM (unit tests) when CHAIN_RPC_URL is unset.
CHAIN_BACKEND = envstr("CHAIN_BACKEND", "rpc")
if CHAIN_BACKEND not in {"rpc", "tester"}:
    raise ImproperlyConfigured(f"CHAIN_BACKEND must be rpc or tester, got {CHAIN_BACKEND!r}")
CHAIN_TIMEOUT_SECONDS = envint("CHAIN_TIMEOUT_SECONDS", 10, minimum=1)
# The relayer's secp256k1 key (0x-hex or urlsafe base64); when unset, a key file under KEYS_DIR.
HEALTHLEDGER_CHAIN_OPERATOR_KEY = envstr("HEALTHLEDGER_CHAIN_OPERATOR_KEY")
# The outbox relay: retry delay after a failed attempt doubles from BASE up to MAX; a sent transaction
# that no receipt shows after REBROADCAST seconds is sent again (same bytes, same hash).
OUTBOX_BACKOFF_BASE_SECONDS = envint("OUTBOX_BACKOFF_BASE_SECONDS", 2, minimum=1)
OUTBOX_BACKOFF_MAX_SECONDS = envint("OUTBOX_BACKOFF_MAX_SECONDS", 300, minimum=1)
OUTBOX_REBROADCAST_SECONDS = envint("OUTBOX_REBROADCAST_SECONDS", 15, minimum=1)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.auth.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "api.rest.exception_handler",
}

# --- OAuth2 (django-oauth-toolkit) and the API's OpenAPI schema --------------------------
OAUTH2_PROVIDER = {
    # SMART launch context, RS256 id_tokens with fhirUser, private_key_jwt client assertions (api/smart.py).
    "OAUTH2_VALIDATOR_CLASS": "api.smart.SmartLaunchValidator",
    "OIDC_ENABLED": True,
    "SCOPES_BACKEND_CLASS": "api.scopes.SmartScopes",
    "PKCE_REQUIRED": True,
    "ACCESS_TOKEN_EXPIRE_SECONDS": envint("OAUTH_ACCESS_TOKEN_SECONDS", 3600, minimum=60),
    "REFRESH_TOKEN_EXPIRE_SECONDS": envint("OAUTH_REFRESH_TOKEN_SECONDS", 30 * 24 * 3600, minimum=60),
    "ROTATE_REFRESH_TOKEN": True,
    # Tokens are stored as SHA-256 checksums only (RFC 9700): a database dump holds no usable token.
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    # RFC 9700 throughout: no implicit or password grant, PKCE with S256 only (plain is refused), tokens
    # never in a query string, `iss` in the authorization response, a replayed refresh token revokes its
    # whole family; and `check --deploy` fails on a configuration that would undo any of it.
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": True,
    "COMPLIANT_BCP_RFC9700_PKCE_REQUIRED": True,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_MATCHING": True,
    "ALLOWED_REDIRECT_URI_SCHEMES": ["http", "https"] if DEBUG else ["https"],
}
# Failed token requests (wrong client secret, unknown client, bad code) per client address before the
# token endpoint answers 429 for the rest of LOGIN_FAILURE_WINDOW_SECONDS.
OAUTH_TOKEN_FAILURE_LIMIT = envint("OAUTH_TOKEN_FAILURE_LIMIT", 20, minimum=1)
# PEM private key (RSA) that signs id_tokens; when unset, oidc_signing_key.pem under KEYS_DIR (api/signing_key.py).
HEALTHLEDGER_OIDC_SIGNING_KEY = envstr("HEALTHLEDGER_OIDC_SIGNING_KEY")
# A backend client's jwks_uri: fetched with this timeout (seconds) and size limit; plain http only in DEBUG.
SMART_JWKS_FETCH_TIMEOUT = envint("SMART_JWKS_FETCH_TIMEOUT", 5, minimum=1)
SMART_JWKS_MAX_BYTES = envint("SMART_JWKS_MAX_BYTES", 65536, minimum=1024)
SMART_JWKS_URI_HTTP_ALLOWED = envbool("SMART_JWKS_URI_HTTP_ALLOWED", DEBUG)
# Fetch a jwks_uri whose host resolves to a private, loopback or link-local address (tests only).
SMART_JWKS_URI_PRIVATE_ALLOWED = envbool("SMART_JWKS_URI_PRIVATE_ALLOWED", False)
# RFC 7591 initial access tokens a clinician makes on the apps page: lifetime in seconds.
SMART_INITIAL_ACCESS_TOKEN_SECONDS = envint("SMART_INITIAL_ACCESS_TOKEN_SECONDS", 24 * 3600, minimum=60)
# Named so the API's migration can point at DOT's token model the way DOT's own migrations do.
OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL = "oauth2_provider.AccessToken"
OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"
OAUTH2_PROVIDER_GRANT_MODEL = "oauth2_provider.Grant"
SPECTACULAR_SETTINGS = {
    "TITLE": "HealthLedger API",
    "DESCRIPTION": "The non-FHIR endpoints (token introspection; jobs and research). The FHIR API's "
    "CapabilityStatement is at /fhir/metadata.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SCHEMA_PATH_PREFIX": "/api",
    # Swagger UI from the drf-spectacular-sidecar package, served by this server: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Sessions in the database under a keyed hash of their id: a copy of the database opens no session.
SESSION_ENGINE = "healthledger.sessions"
SESSION_COOKIE_HTTPONLY = True
# An idle timeout: the session ends SESSION_IDLE_SECONDS after the last request (every request renews it),
# and with the browser.
SESSION_COOKIE_AGE = envint("SESSION_IDLE_SECONDS", 30 * 60, minimum=60)
SESSION_SAVE_EVERY_REQUEST = True
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# HTTPS only in production: HSTS (a year, subdomains, preload-ready), plain HTTP redirected to HTTPS
# (except /healthz, for a local monitor), and the TLS-terminating proxy's X-Forwarded-Proto trusted.
# That proxy must set the header itself and drop any the client sent; DJANGO_TRUST_X_FORWARDED_PROTO=false
# when TLS ends at gunicorn or nothing sits in front.
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0 if DEBUG else 365 * 24 * 3600, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
if envbool("DJANGO_TRUST_X_FORWARDED_PROTO", not DEBUG):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Django looks for its own CSRF middleware by name; healthledger.middleware.PageOnlyCsrfViewMiddleware
# is that class, stepping aside only for the bearer-token FHIR API.
SILENCED_SYSTEM_CHECKS = ["security.W003"]

# --- Portal: sign-in, second factor, Content-Security-Policy -----------------------
LOGIN_URL = "portal:login"
LOGIN_REDIRECT_URL = "portal:home"
LOGOUT_REDIRECT_URL = "portal:login"
# Failed sign-ins counted per username and client address; past the limit, sign-in waits out the window.
LOGIN_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 5, minimum=1)
LOGIN_FAILURE_WINDOW_SECONDS = envint("LOGIN_FAILURE_WINDOW_SECONDS", 15 * 60, minimum=1)
OTP_TOTP_ISSUER = "HealthLedger"

# --- Break-glass and notifications -----------------------------------------------------
# A break-glass episode lasts this long from the clinician's first emergency read of a patient ...
BREAK_GLASS_WINDOW_MINUTES = envint("BREAK_GLASS_WINDOW_MINUTES", 60, minimum=1)
# ... and a clinician may break the glass on at most this many different patients in any 24 hours.
BREAK_GLASS_PATIENTS_PER_DAY = envint("BREAK_GLASS_PATIENTS_PER_DAY", 3, minimum=1)
# Where users sign in, for the links in e-mails (which carry nothing else).
HEALTHLEDGER_PUBLIC_URL = envstr("HEALTHLEDGER_PUBLIC_URL", "http://localhost:8000")
# Development prints e-mails on the console; production sets an SMTP server.
EMAIL_BACKEND = envstr("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = envstr("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = envstr("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = envstr("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "HealthLedger <no-reply@localhost>")
# django-csp 4 format. No inline script or style anywhere: scripts and styles are static files, htmx is
# configured by a meta tag, charts read their data from JSON endpoints.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

LOG_LEVEL = envstr("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # Request bodies can carry PHI: Django's request logger must never log them.
    "loggers": {"django.request": {"level": "ERROR", "propagate": True}},
}
