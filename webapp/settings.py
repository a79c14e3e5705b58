"""Django settings for RALM Feed, read from the environment (12-factor).

Every setting has a working local default except SECRET_KEY, which is required whenever
DEBUG is off. `make demo` and `make test` write a random one into `.env` on first run.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from webapp.common import logs

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")  # a missing file is fine; real env vars win

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off (see README).")
    SECRET_KEY = "insecure-local-debug-only"  # noqa: S105 -- used only with DEBUG=1

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "django_celery_beat",
    "django_prometheus",
    "axes",
    "webapp.news",
    "webapp.lookalike",
    "webapp.feed",
    "workers",
]

# Prometheus metrics (webapp.common.metrics): request and database metrics from
# django-prometheus, the feed's and the refresh's own. Off: nothing is recorded, /metrics is 404.
METRICS_ENABLED = env.bool("METRICS_ENABLED", default=True)
# Who may read /metrics: a client sending "Authorization: Bearer <METRICS_TOKEN>", a staff
# user signed in to the admin, and, while no token is set, a client on this machine (loopback).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# The Celery worker serves its processes' metrics (the refresh's) on this port; 0: not served.
WORKER_METRICS_PORT = env.int("WORKER_METRICS_PORT", default=9808)
WORKER_METRICS_ADDR = env.str("WORKER_METRICS_ADDR", default="127.0.0.1")

MIDDLEWARE = [
    "webapp.common.logs.RequestLog",
    "webapp.feed.middleware.ApiErrors",
    "webapp.common.security.SecureResponses",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "webapp.feed.middleware.StaffPageLimit",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
if METRICS_ENABLED:  # django-prometheus's request metrics, the two that matter (webapp.common.metrics)
    MIDDLEWARE = [*MIDDLEWARE, "webapp.common.metrics.RequestMetrics"]
MIDDLEWARE = [*MIDDLEWARE, "axes.middleware.AxesMiddleware"]  # last, as django-axes asks

# Log-in throttling (django-axes), on the site's log-in and the admin's: after
# LOGIN_FAILURE_LIMIT wrong passwords for one username from one address, that pair is locked
# out for LOGIN_LOCKOUT_MINUTES, even with the right password; a success clears the count.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("LOGIN_LOCKOUT_MINUTES", default=15.0))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "webapp.common.addresses.client_address"
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "webapp" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "webapp.feed.access.context",
            ],
        },
    },
]

# Postgres through psycopg 3; persistent connections, checked before reuse.
DATABASES = {
    "default": env.db(
        "DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/ralm_feed"
    )
}
if METRICS_ENABLED and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["ENGINE"] = "django_prometheus.db.backends.postgresql"  # counts and times queries
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="ralm"),
    }
}

# Celery (workers/celery.py reads every CELERY_* setting).
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)
CELERY_RESULT_EXPIRES = 3600
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Task events for Flower, whose /metrics has the tasks' runtimes and failures.
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_TIMEZONE = "UTC"
# Beat reads its schedule from the database (editable in the admin); workers/schedule.py
# declares the entries and creates any that are missing.
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Seconds between runs of the popularity refresh (the baseline feed's popularity signal).
POPULARITY_REFRESH_SECONDS = env.float("POPULARITY_REFRESH_SECONDS", default=60.0)
# Seconds between sweeps that embed items still lacking a text vector.
EMBED_REFRESH_SECONDS = env.float("EMBED_REFRESH_SECONDS", default=60.0)
# Half-life of a click's weight in the popularity signal, hours.
POPULARITY_HALF_LIFE_HOURS = env.float("POPULARITY_HALF_LIFE_HOURS", default=6.0)

# The feed.
FEED_DEFAULT_LIMIT = env.int("FEED_DEFAULT_LIMIT", default=10)
FEED_MAX_LIMIT = env.int("FEED_MAX_LIMIT", default=100)
# Half-life of a story's freshness in the baseline ranker, hours.
FEED_RECENCY_HALF_LIFE_HOURS = env.float("FEED_RECENCY_HALF_LIFE_HOURS", default=24.0)
# The ranker arm that serves a feed unless a request names another (`arm=`): one of the
# registry in recsys/arms.py (ctr, blend, feature, noralm, gate), which holds each arm's
# parameters. `feature` weighs RALM's and the cold-start model's logits as learned from the
# logged impressions, RALM's never below 0 (served by `blend` until the training fits it).
FEED_ARM = env.str("FEED_ARM", default="feature")
# The demo world whose hidden click model the simulator clicks by and the benches score against
# (recsys.simulation.WORLDS; a name, optionally with overrides such as audiences:w_audience=1.2).
DEMO_WORLD = env.str("DEMO_WORLD", default="audiences")
FEED_CATALOG_TTL_SECONDS = env.float("FEED_CATALOG_TTL_SECONDS", default=30.0)  # per-process catalog copy
# Above this many live stories the feed recalls candidates before ranking (webapp.feed.gathering),
# and above this many item states the web processes keep a recall index instead of the states
# (webapp.lookalike.serving).
FEED_RECALL_ABOVE = env.int("FEED_RECALL_ABOVE", default=2000)
# Clicks one reader may store (POST /api/clicks, the click form): "N/second|minute|hour|day" or
# "off"; over it a click is answered 429 with Retry-After. Kept in Redis; allowed if Redis is down.
CLICK_RATE_LIMIT = env.str("CLICK_RATE_LIMIT", default="30/minute")
# Per client (browser session, else address; webapp/feed/clients.py), besides the per-reader limit.
FEED_CLIENT_RATE_LIMIT = env.str("FEED_CLIENT_RATE_LIMIT", default="300/minute")
CLICK_CLIENT_RATE_LIMIT = env.str("CLICK_CLIENT_RATE_LIMIT", default="120/minute")
# New readers ("Start reading", sign-up) one address may create.
READER_CLIENT_RATE_LIMIT = env.str("READER_CLIENT_RATE_LIMIT", default="20/hour")
# The admin's heavy pages (the live dashboard, an item's seeds page) one staff account may
# open; an admin at work (the dashboard's 15 s refresh, a seeds page every 10 s) opens 10 a
# minute.
ADMIN_PAGE_RATE_LIMIT = env.str("ADMIN_PAGE_RATE_LIMIT", default="30/minute")
# Peers whose X-Forwarded-For names the client (webapp/common/addresses.py): the reverse proxy.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=["127.0.0.1/32", "::1/128"])
# The reader simulator sends it (X-Simulator-Token) to be one client per simulated reader,
# outside the per-client limits; empty: no request is the simulator's.
SIMULATOR_TOKEN = env.str("SIMULATOR_TOKEN", default="")

# Trained models: one folder per training run under MODEL_DIR (see recsys/artifacts.py).
MODEL_DIR = env.path("MODEL_DIR", default=BASE_DIR / "var" / "models")
# Latest seeds an item keeps (the look-alike model attends over their clusters).
SEED_CAP = env.int("SEED_CAP", default=1000)
# An item is cold (scored by the cold-start model) until it has this many seed readers; a
# warm item goes cold again only below SEED_DEMOTE_BELOW (default: half), so it never flaps.
SEED_THRESHOLD = env.int("SEED_THRESHOLD", default=20)
SEED_DEMOTE_BELOW = env.int("SEED_DEMOTE_BELOW", default=SEED_THRESHOLD // 2)
# Seconds between runs of the cold-to-warm promotion.
PROMOTE_REFRESH_SECONDS = env.float("PROMOTE_REFRESH_SECONDS", default=60.0)
# Seconds between runs of the seed and look-alike state refresh, and its batch size.
LOOKALIKE_REFRESH_SECONDS = env.float("LOOKALIKE_REFRESH_SECONDS", default=60.0)
LOOKALIKE_REFRESH_BATCH = env.int("LOOKALIKE_REFRESH_BATCH", default=2000)
# The refresh's partitions, each a task of its own: at least the worker processes that should
# share it (the Procfile's worker runs two).
LOOKALIKE_REFRESH_PARTITIONS = env.int("LOOKALIKE_REFRESH_PARTITIONS", default=2)
if LOOKALIKE_REFRESH_PARTITIONS < 1:
    raise ImproperlyConfigured(f"LOOKALIKE_REFRESH_PARTITIONS must be 1 or more, not {LOOKALIKE_REFRESH_PARTITIONS}")
# Nightly retraining: hour and minute (UTC).
RETRAIN_AT = env.str("RETRAIN_AT", default="03:00")

LOGIN_URL = "feed:login"
LOGIN_REDIRECT_URL = "feed:feed"
LOGOUT_REDIRECT_URL = "feed:home"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # No manifest: pages render whether or not `collectstatic` has run (make demo runs it).
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True  # serve app static files straight from the apps when not collected

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": ["webapp.feed.access.SessionReader"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["webapp.feed.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "webapp.feed.api.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "RALM Feed API",
    "DESCRIPTION": "News feed with real-time look-alike cold start.",
    "VERSION": "0.1.0",
}

# Every line one JSON object (webapp.common.logs); a line per request and per task.
logs.configure()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": logs.formatter()},
    "filters": {"brief": {"()": "webapp.common.logs.Brief"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "faiss.loader": {"level": "WARNING"},  # which CPU build it picked, at every start
        "axes": {"level": "WARNING"},  # a line per log-in attempt otherwise; lockouts are warnings
        # A Host header this site does not serve: one short line, no traceback.
        "django.security.DisallowedHost": {"handlers": ["console"], "filters": ["brief"], "propagate": False},
    },
}

# HTTPS (webapp/common/security.py). The reverse proxy says which scheme the client used.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# On when the site is served over HTTPS only: plain HTTP is redirected (except the health check
# and the metrics, which the probes and Prometheus read inside the deployment), and the
# cookies are Secure always, not just on HTTPS requests.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE_SSL_REDIRECT
# HSTS, sent over HTTPS only: a browser that once reached the site over HTTPS keeps to it.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 365 * 86400)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
