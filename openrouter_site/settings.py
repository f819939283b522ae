"""One settings module, driven by the environment.

With no environment at all the platform runs on embedded defaults: SQLite, the
local-memory cache, the in-memory channel layer, a filesystem Celery broker and
in-process credit counters. ``DATABASE_URL`` switches the database to
PostgreSQL; ``REDIS_URL`` switches the cache, channel layer, Celery broker and
the credit/rate counters to Redis.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from celery.schedules import crontab

from openrouter_site.install_secrets import secret_setting, secrets_refuse_public

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


# SECRET_KEY, STRIPE_WEBHOOK_SECRET and CRYPTO_WEBHOOK_SECRET: the environment's, else the per-install
# ones `make run` generates in var/dev-secrets.json, else public development values, refused with DEBUG
# off (openrouter_site/install_secrets.py; the check runs below, once all three are read).
SECRET_KEY = secret_setting("SECRET_KEY", VAR_DIR)
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = os.environ.get("ALLOWED_HOSTS", "*").split(",")
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]
# A form posted without a valid CSRF token gets a page that says so (nothing was done).
CSRF_FAILURE_VIEW = "openrouter_site.errors.csrf_failure"

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.sites",
    "rest_framework",
    "channels",
    "allauth",
    "allauth.account",
    "accounts",
    "billing",
    "routing",
    "activity",
    "chatroom",
    "presets",
    "openrouter_site",  # project-wide system checks (openrouter_site/checks.py)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "openrouter_site.security.content_security_policy_middleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "openrouter_site.urls"
ASGI_APPLICATION = "openrouter_site.asgi.application"
SITE_ID = 1

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context.dashboard",  # the personal/organization switcher (issue 12)
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("SQLITE_PATH", str(VAR_DIR / "db.sqlite3")),
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            # A file, not shared-cache memory: the live server's threads and the settlement
            # writer then wait on SQLite's busy timeout instead of failing with "table is locked".
            "TEST": {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")},
        }
    }
DATABASES["default"].setdefault("TEST", {})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache, channel layer, Celery broker, counters -----------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
REDIS_ASYNC_POOL_SIZE = int(os.environ.get("REDIS_ASYNC_POOL_SIZE", "64"))  # hot-path connections per process
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    CHANNEL_LAYERS = {
        # A consumer waits on the layer with a blocking pop of up to 5 s (channels_redis); redis-py 8's default
        # 5 s socket timeout cut those reads, killing every socket quiet for 5 s (a long chatroom answer).
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}]},
        }
    }
    CELERY_BROKER_URL = REDIS_URL
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    _broker_dir = VAR_DIR / "celery-broker"
    (_broker_dir / "out").mkdir(parents=True, exist_ok=True)
    (_broker_dir / "processed").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
        "control_folder": str(_broker_dir / "control"),  # else ./control appears wherever a worker runs
    }
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_IGNORE_RESULT = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "credit-counters-reconcile": {"task": "billing.tasks.counters_reconcile", "schedule": 60.0},
    "endpoint-stats-rollup": {"task": "routing.tasks.endpoint_stats_rollup", "schedule": 60.0},
    "purchases-reconcile": {"task": "billing.tasks.purchases_reconcile", "schedule": 120.0},
    "lots-expire": {"task": "billing.tasks.lots_expire", "schedule": crontab(hour=3, minute=0)},
    "lots-expiry-notify": {"task": "billing.tasks.lots_expiry_notify", "schedule": crontab(hour=3, minute=30)},
    "generation-contents-purge": {"task": "activity.tasks.generation_contents_purge_expired", "schedule": 3600.0},
}

# --- Auth ------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
# Sign-up sends a verification link (console backend in development); the promotional signup credits
# are granted when the address is verified (accounts/adapters.py). "optional": the account is usable
# at once; "mandatory": no sign-in until verified.
ACCOUNT_EMAIL_VERIFICATION = os.environ.get("ACCOUNT_EMAIL_VERIFICATION", "optional")
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/settings/credits"
ACCOUNT_SIGNUP_REDIRECT_URL = "/settings/credits"
# New users get their personal account (and the signup allowance) from this adapter.
ACCOUNT_ADAPTER = "accounts.adapters.AccountAdapter"
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "billing@openrouter.local")
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# --- REST framework ---------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["openrouter_site.inputs.JsonParser"],
    "EXCEPTION_HANDLER": "openrouter_site.errors.drf_exception_handler",
    "UNAUTHENTICATED_USER": None,
}

# --- Static ------------------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
# Django serves /static/ itself (make run has no other web server); turn off behind a CDN or proxy.
SERVE_STATIC = env_bool("SERVE_STATIC", True)

# --- Security headers and HTTPS ----------------------------------------------------------
# Pages may not be framed (the credits page has money buttons): X-Frame-Options and frame-ancestors.
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy of every Django response (openrouter_site/security.py): scripts only from
# files of this site (no inline <script>, no on*= attributes, no eval) plus Stripe.js's origin, which the
# middleware adds to script-src, connect-src and frame-src (localstripe's in development). Pages that need
# another origin add it here, or operators through CONTENT_SECURITY_POLICY_EXTRA, e.g.
# "img-src https://cdn.example.com; connect-src wss://chat.example.com".
CONTENT_SECURITY_POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'", "'unsafe-inline'"],  # Chart.js and htmx set inline styles
    "img-src": ["'self'", "data:"],
    "font-src": ["'self'"],
    "connect-src": ["'self'"],
    "frame-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],  # browsers apply it to a form's redirects too: add a real crypto processor's pay page
    "frame-ancestors": ["'none'"],
}
for _directive in os.environ.get("CONTENT_SECURITY_POLICY_EXTRA", "").split(";"):
    _name, *_sources = _directive.split() or [""]
    if _sources:
        CONTENT_SECURITY_POLICY.setdefault(_name, []).extend(_sources)
# HTTPS=1 when the site is served over HTTPS (directly or behind a proxy): secure cookies, redirect
# http to https, and HSTS for a year (each overridable).
HTTPS = env_bool("HTTPS", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", HTTPS)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000" if HTTPS else "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", HTTPS)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", HTTPS)
# Behind a TLS-terminating proxy: the header it sets, e.g. SECURE_PROXY_SSL_HEADER=X-Forwarded-Proto
# (trusted as "https" means the request came over HTTPS; only set it when the proxy always sets it).
if os.environ.get("SECURE_PROXY_SSL_HEADER"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + os.environ["SECURE_PROXY_SSL_HEADER"].upper().replace("-", "_"), "https")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
    "loggers": {
        "openrouter": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO"), "propagate": False},
    },
}

# --- Gateway ------------------------------------------------------------------------
# Where the catalog's providers go when no real key is configured for them.
PROVIDER_SIMULATOR_URL = os.environ.get("PROVIDER_SIMULATOR_URL", "http://127.0.0.1:8090").rstrip("/")
# Largest request body the API accepts (bytes); larger ones get 413.
GATEWAY_MAX_BODY_BYTES = int(os.environ.get("GATEWAY_MAX_BODY_BYTES", str(4 * 1024 * 1024)))
# Seconds between ": OPENROUTER PROCESSING" comments while waiting for a provider.
GATEWAY_KEEPALIVE_SECONDS = float(os.environ.get("GATEWAY_KEEPALIVE_SECONDS", "3"))
# Upstream timeouts (seconds): connect, and waiting for the first byte of the answer.
GATEWAY_CONNECT_TIMEOUT = float(os.environ.get("GATEWAY_CONNECT_TIMEOUT", "5"))
GATEWAY_FIRST_BYTE_TIMEOUT = float(os.environ.get("GATEWAY_FIRST_BYTE_TIMEOUT", "60"))
GATEWAY_READ_TIMEOUT = float(os.environ.get("GATEWAY_READ_TIMEOUT", "120"))
# How long an API key's lookup is cached in each process (seconds); changes invalidate at once.
GATEWAY_KEY_CACHE_SECONDS = float(os.environ.get("GATEWAY_KEY_CACHE_SECONDS", "30"))
# Organizations (issue 12): seats per organization, and how long an invitation link works.
ORGANIZATION_MAX_MEMBERS = int(os.environ.get("ORGANIZATION_MAX_MEMBERS", "10"))
ORGANIZATION_INVITE_HOURS = int(os.environ.get("ORGANIZATION_INVITE_HOURS", "72"))
# How long the in-memory catalog snapshot lives before it is re-read (seconds).
GATEWAY_CATALOG_CACHE_SECONDS = float(os.environ.get("GATEWAY_CATALOG_CACHE_SECONDS", "30"))
# Settlement writer: flush every N seconds or M generations, whichever comes first.
SETTLEMENT_FLUSH_SECONDS = float(os.environ.get("SETTLEMENT_FLUSH_SECONDS", "0.02"))
SETTLEMENT_BATCH_SIZE = int(os.environ.get("SETTLEMENT_BATCH_SIZE", "500"))
# Redis key prefix for counters (tests use their own).
COUNTER_PREFIX = os.environ.get("COUNTER_PREFIX", "or")
# A Prometheus scraper sends it as a bearer token to /metrics (staff users need none); unset: staff only.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")

# --- Billing ---------------------------------------------------------------------------
# Credits granted once to a new account at signup (USD, promotional: never refundable).
SIGNUP_FREE_CREDITS_USD = os.environ.get("SIGNUP_FREE_CREDITS_USD", "0.10")
# What one purchase may buy (USD of credits, before the fee).
BILLING_MIN_PURCHASE_USD = os.environ.get("BILLING_MIN_PURCHASE_USD", "5")
BILLING_MAX_PURCHASE_USD = os.environ.get("BILLING_MAX_PURCHASE_USD", "10000")
# A purchase still pending after this long is checked with the payment processor.
BILLING_RECONCILE_AFTER_SECONDS = int(os.environ.get("BILLING_RECONCILE_AFTER_SECONDS", "180"))
# A purchase that never reached the processor is given up (canceled) after this long.
BILLING_ABANDON_AFTER_SECONDS = int(os.environ.get("BILLING_ABANDON_AFTER_SECONDS", "3600"))
# Users are told this many days before unused credits expire.
BILLING_EXPIRY_NOTICE_DAYS = int(os.environ.get("BILLING_EXPIRY_NOTICE_DAYS", "30"))
# Auto top-up: declined attempts in a row before it is switched off, and the wait after one.
BILLING_AUTO_TOPUP_MAX_FAILURES = int(os.environ.get("BILLING_AUTO_TOPUP_MAX_FAILURES", "3"))
BILLING_AUTO_TOPUP_RETRY_SECONDS = int(os.environ.get("BILLING_AUTO_TOPUP_RETRY_SECONDS", "3600"))
# Staff console: the largest credit adjustment one action may make (USD), for support and for leads.
STAFF_SUPPORT_ADJUSTMENT_LIMIT_USD = os.environ.get("STAFF_SUPPORT_ADJUSTMENT_LIMIT_USD", "100")
STAFF_LEAD_ADJUSTMENT_LIMIT_USD = os.environ.get("STAFF_LEAD_ADJUSTMENT_LIMIT_USD", "10000")

# Stripe. With STRIPE_SECRET_KEY the real Stripe API is used; without it the platform talks to
# a local Stripe server (localstripe, which `make run` starts) at STRIPE_API_BASE.
STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", "")
STRIPE_PUBLISHABLE_KEY = os.environ.get("STRIPE_PUBLISHABLE_KEY", "" if STRIPE_SECRET_KEY else "pk_test_localstripe")
STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", "" if STRIPE_SECRET_KEY else "http://127.0.0.1:8420").rstrip("/")
STRIPE_WEBHOOK_SECRET = secret_setting("STRIPE_WEBHOOK_SECRET", VAR_DIR)
# Stripe.js: the real one with real keys, localstripe's stand-in otherwise (derived from STRIPE_API_BASE).
STRIPE_JS_URL = os.environ.get("STRIPE_JS_URL", "")

# Crypto (USDC) payments: "simulated" is the built-in processor for development and tests.
CRYPTO_PROCESSOR = os.environ.get("CRYPTO_PROCESSOR", "simulated")
CRYPTO_WEBHOOK_SECRET = secret_setting("CRYPTO_WEBHOOK_SECRET", VAR_DIR)
# The simulated processor's pay page is unauthenticated (anyone with a charge id can "pay"): it only
# works with DEBUG on or when switched on explicitly (`make run` does, with localstripe).
CRYPTO_SIMULATED_ENABLED = env_bool("CRYPTO_SIMULATED_ENABLED", DEBUG)
secrets_refuse_public(
    debug=DEBUG,
    values={"SECRET_KEY": SECRET_KEY, "STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET, "CRYPTO_WEBHOOK_SECRET": CRYPTO_WEBHOOK_SECRET},
)

PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", "")
# The model used when a request names none.
DEFAULT_MODEL = os.environ.get("DEFAULT_MODEL", "openai/gpt-4o-mini")

# --- BYOK (bring your own provider key) ------------------------------------------------
# Fernet keys, comma-separated, that encrypt stored provider keys: the first encrypts, every
# one decrypts (rotate by prepending a new key, then `manage.py byok_reencrypt`). Unset, a key
# is derived from SECRET_KEY: fine for development, but production must set this.
BYOK_ENCRYPTION_KEYS = [k.strip() for k in os.environ.get("BYOK_ENCRYPTION_KEYS", "").split(",") if k.strip()]
# BYOK requests per account per UTC month with no BYOK fee (5% of list price after that).
BYOK_FREE_REQUESTS_PER_MONTH = int(os.environ.get("BYOK_FREE_REQUESTS_PER_MONTH", "1000000"))
# How long an account's decrypted provider keys are cached in each process (seconds).
GATEWAY_BYOK_CACHE_SECONDS = float(os.environ.get("GATEWAY_BYOK_CACHE_SECONDS", "30"))
GATEWAY_PRESET_CACHE_SECONDS = float(os.environ.get("GATEWAY_PRESET_CACHE_SECONDS", "60"))  # presets/cache.py
# Prompt logging (opt-in per account, activity/content_log.py): Fernet keys (comma-separated; the first
# encrypts), unset: derived from SECRET_KEY; and how long stored prompts and answers are kept.
PROMPT_LOG_KEYS = [k.strip() for k in os.environ.get("PROMPT_LOG_KEYS", "").split(",") if k.strip()]
PROMPT_LOG_RETENTION_DAYS = int(os.environ.get("PROMPT_LOG_RETENTION_DAYS", "30"))

# --- Plugins and routers ----------------------------------------------------------------
# The web plugin searches with Exa when this key is set, else with the offline simulated engine.
EXA_API_KEY = os.environ.get("EXA_API_KEY", "")
WEB_SEARCH_TIMEOUT_SECONDS = float(os.environ.get("WEB_SEARCH_TIMEOUT_SECONDS", "10"))
# openrouter/auto: the models tried for each prompt category, best first (see routing/routers.py).
AUTO_ROUTER_POOL = {
    "code": ["anthropic/claude-sonnet-4", "openai/gpt-4.1", "deepseek/deepseek-chat-v3-0324",
             "mistralai/codestral-2501", "qwen/qwen-2.5-coder-32b-instruct"],
    "maths": ["openai/o3-mini", "deepseek/deepseek-r1", "google/gemini-2.5-pro", "qwen/qwen3-235b-a22b"],
    "long_context": ["google/gemini-2.5-flash", "openai/gpt-4.1", "google/gemini-2.5-pro", "meta-llama/llama-4-maverick"],
    "vision": ["openai/gpt-4o", "google/gemini-2.5-flash", "anthropic/claude-sonnet-4", "meta-llama/llama-4-maverick"],
    "tool_use": ["openai/gpt-4.1-mini", "anthropic/claude-sonnet-4", "google/gemini-2.5-flash", "openai/gpt-4o-mini"],
    "chat": ["openai/gpt-4o-mini", "google/gemini-2.5-flash", "anthropic/claude-3.5-haiku",
             "meta-llama/llama-3.3-70b-instruct"],
}

# BYOK requests go to the provider's real API (on) or to the same target as shared capacity,
# i.e. the simulator when the operator has no key for that provider (off, the default).
BYOK_REAL_UPSTREAMS = env_bool("BYOK_REAL_UPSTREAMS", False)

# --- Chatroom (chatroom/consumers.py) ---------------------------------------------------
# Models answering one prompt side by side; the largest socket frame (the conversation and its
# attachments, for every column); socket frames sent and not yet acknowledged by the page
# (back-pressure: past it the consumer stops reading the providers until the page catches up).
CHATROOM_MAX_MODELS = int(os.environ.get("CHATROOM_MAX_MODELS", "4"))
CHATROOM_MAX_FRAME_BYTES = int(os.environ.get("CHATROOM_MAX_FRAME_BYTES", str(8 * 1024 * 1024)))
CHATROOM_WINDOW_FRAMES = int(os.environ.get("CHATROOM_WINDOW_FRAMES", "256"))
# Answers streaming at once on one socket (a message's models plus regenerations).
CHATROOM_MAX_RUNNING = int(os.environ.get("CHATROOM_MAX_RUNNING", "8"))
