"""Settings: one module, every value from the environment (12-factor) with development defaults.

See the configuration table in docs/configuration.md. Production (``DEBUG=0``) refuses to start without a
real ``SECRET_KEY``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

from fulfillment import logs as _logs

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

DEBUG = env.bool("DEBUG", default=True)

_DEV_SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production"
SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET_KEY)
if not DEBUG and (SECRET_KEY == _DEV_SECRET_KEY or len(SECRET_KEY) < 32):
    raise ImproperlyConfigured(
        "SECRET_KEY must be set to a real secret (at least 32 random characters) when DEBUG is "
        "off. Generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))'"
    )

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # Before django.contrib.admin: its templates add the "Events" button to tracked models'
    # admin pages (it overrides the admin's object-tools templates).
    "pghistory.admin",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "pgtrigger",
    "pghistory",
    "procrastinate.contrib.django",
    "corsheaders",
    # Listed so /api/v1/docs renders its Swagger UI from django-ninja's bundled static files
    # (served by whitenoise) instead of loading it from a CDN.
    "ninja",
    "fulfillment",
]

MIDDLEWARE = [
    "fulfillment.metrics.HttpMetricsMiddleware",  # first: times the whole request
    "django.middleware.security.SecurityMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "fulfillment.middleware.RequestContextMiddleware",
    "fulfillment.logs.RequestLogMiddleware",
    "fulfillment.hardening.BodySizeLimitMiddleware",
    # X-DB-Position (read-your-writes across requests) and replica fall-back; a no-op without
    # the primary/replica router (config/db_router.py).
    "config.db_router.ReplicaRoutingMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "pghistory.middleware.HistoryMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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
            ]
        },
    }
]


# --- database ------------------------------------------------------------------------------
def _database_url() -> str:
    """DATABASE_URL, else the original system's DB_* variables, else the running dev stack."""
    if env.str("DATABASE_URL", default=""):
        return env.str("DATABASE_URL")
    if any(
        env.str(k, default="") for k in ("DB_HOST", "DB_NAME", "DB_USER", "DB_PASSWORD", "DB_PORT")
    ):
        return "postgres://{user}:{password}@{host}:{port}/{name}".format(
            user=env.str("DB_USER", default="postgres"),
            password=env.str("DB_PASSWORD", default="password123"),
            host=env.str("DB_HOST", default="localhost"),
            port=env.int("DB_PORT", default=5432),
            name=env.str("DB_NAME", default="order_fulfillment"),
        )
    state = _devstack_state()
    if "pg_port" in state:
        return f"postgres://postgres@127.0.0.1:{state['pg_port']}/fulfillment"
    return "postgres://postgres:password123@localhost:5432/order_fulfillment"


def _devstack_state() -> dict[str, int]:
    path = Path(env.str("DEVSTACK_DIR", default=str(BASE_DIR / ".devstack"))) / "state.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def _db_config(url: str) -> dict[str, Any]:
    """A DATABASES entry for ``url`` (primary and replica share the connection settings)."""
    config: dict[str, Any] = dict(env.db_url_config(url))
    url_options: dict[str, Any] = dict(config.get("OPTIONS") or {})
    config.update(
        {
            "ENGINE": "django.db.backends.postgresql",
            # Persistent connections under sync gunicorn workers: one per worker process.
            "CONN_MAX_AGE": env.int("CONN_MAX_AGE", default=600),
            # A health check costs a `SELECT 1` round trip at the start of every request. Off by
            # default: after a database restart each worker fails one request (503), and Django
            # then drops the broken connection at the end of that request.
            "CONN_HEALTH_CHECKS": env.bool("CONN_HEALTH_CHECKS", default=False),
            # Behind PgBouncer in transaction pooling mode (docs/scaling.md, "Connections").
            "DISABLE_SERVER_SIDE_CURSORS": env.bool(
                "DB_DISABLE_SERVER_SIDE_CURSORS", default=DATABASE_POOLER == "pgbouncer"
            ),
            # URL query options (e.g. ?sslmode=require, ?target_session_attrs=read-write) are
            # kept; a multi-host URL (host1:port1,host2:port2) reaches psycopg as is.
            "OPTIONS": {"connect_timeout": env.int("DB_CONNECT_TIMEOUT", default=5), **url_options},
        }
    )
    if DATABASE_POOLER == "pgbouncer":
        # A transaction pooler keeps no session state: no server-side cursors (above) and no
        # server-side parameter binding (psycopg would prepare statements).
        config["OPTIONS"]["server_side_binding"] = False
    return config


# "pgbouncer": the web processes connect through PgBouncer in transaction pooling mode.
DATABASE_POOLER = env.str("DATABASE_POOLER", default="")
if DATABASE_POOLER not in ("", "pgbouncer"):
    raise ImproperlyConfigured("DATABASE_POOLER must be empty or 'pgbouncer'")


DATABASES = {
    "default": {
        **_db_config(_database_url()),
        "TEST": {"NAME": env.str("TEST_DATABASE_NAME", default="test_fulfillment")},
    }
}
# Optional streaming replica: reads go there, writes/locks/transactions to the primary
# (config/db_router.py). In tests the alias mirrors the test database.
DATABASE_REPLICA_URL = env.str("DATABASE_REPLICA_URL", default="")
if DATABASE_REPLICA_URL:
    DATABASES["replica"] = {**_db_config(DATABASE_REPLICA_URL), "TEST": {"MIRROR": "default"}}
    # A replica that does not answer soon is skipped: reads fall back to the primary.
    DATABASES["replica"]["OPTIONS"]["connect_timeout"] = env.int(
        "DATABASE_REPLICA_CONNECT_TIMEOUT", default=1
    )
# After a replica failure, reads use the primary this long before trying the replica again.
DATABASE_REPLICA_COOLDOWN_SECONDS = env.float("DATABASE_REPLICA_COOLDOWN_SECONDS", default=5.0)
# How long a process trusts the replica's last known replay position (X-DB-Position reads).
DATABASE_REPLICA_POSITION_CACHE_MS = env.int("DATABASE_REPLICA_POSITION_CACHE_MS", default=20)
# Comma separated; set to an empty value to keep a configured replica alias unused.
DATABASE_ROUTERS = env.list(
    "DATABASE_ROUTERS",
    default=["config.db_router.PrimaryReplicaRouter"] if DATABASE_REPLICA_URL else [],
)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis ---------------------------------------------------------------------------------
_state = _devstack_state()
REDIS_URL = env.str(
    "REDIS_URL",
    default=f"redis://127.0.0.1:{_state['redis_port']}/0"
    if "redis_port" in _state
    else "redis://localhost:6379/0",
)
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "of",
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SOCKET_CONNECT_TIMEOUT": env.float("REDIS_CONNECT_TIMEOUT", default=0.25),
            "SOCKET_TIMEOUT": env.float("REDIS_TIMEOUT", default=0.25),
            # Redis down must never take the API down: reads fall back to the database.
            "IGNORE_EXCEPTIONS": True,
        },
    }
}
DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
DJANGO_REDIS_LOGGER = "fulfillment.cache"
CACHE_TTL_SECONDS = env.int("CACHE_TTL_SECONDS", default=5)

# --- auth, i18n, static --------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
WHITENOISE_USE_FINDERS = True  # serve app static files without collectstatic in development
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("MAX_REQUEST_BYTES", default=2 * 1024 * 1024)

# --- domain settings -----------------------------------------------------------------------
PAGE_SIZE_DEFAULT = env.int("PAGE_SIZE_DEFAULT", default=50)
PAGE_SIZE_MAX = env.int("PAGE_SIZE_MAX", default=500)
NINJA_PAGINATION_PER_PAGE = PAGE_SIZE_DEFAULT
NINJA_PAGINATION_MAX_LIMIT = PAGE_SIZE_MAX
DEFAULT_LOW_STOCK_THRESHOLD = env.int("DEFAULT_LOW_STOCK_THRESHOLD", default=10)

# --- logging ------------------------------------------------------------------------------
# structlog: one JSON line per request (fulfillment.logs.RequestLogMiddleware) and per job
# (fulfillment.logs.job_log); every stdlib log record is rendered as JSON too.
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOG_FORMAT = env.str("LOG_FORMAT", default="json")  # json | console
LOGGING = _logs.configure(level=LOG_LEVEL, fmt=LOG_FORMAT)
LOGGING["loggers"]["procrastinate"] = {
    "level": env.str("PROCRASTINATE_LOG_LEVEL", default="WARNING")
}

# --- orders --------------------------------------------------------------------------------
MAX_ORDER_LINES = env.int("MAX_ORDER_LINES", default=50)
BULK_MAX_ORDERS = env.int("BULK_MAX_ORDERS", default=1000)
ORDER_STATISTICS_TTL_SECONDS = env.int("ORDER_STATISTICS_TTL_SECONDS", default=10)
# The detailed /health/ report is shared by every caller for this long (0: computed per call).
HEALTH_CACHE_SECONDS = env.int("HEALTH_CACHE_SECONDS", default=2)

# --- pipeline ------------------------------------------------------------------------------
# A non-terminal order is stale when it has stayed in its status longer than this.
STALE_AFTER_SECONDS = {
    "pending": env.int("STALE_PENDING_SECONDS", default=300),
    "processing": env.int("STALE_PROCESSING_SECONDS", default=600),
    "shipped": env.int("STALE_SHIPPED_SECONDS", default=900),
}


def _seconds_range(name: str, default: str) -> tuple[float, float]:
    """``"2-5"`` -> (2.0, 5.0); ``"0"`` -> (0.0, 0.0)."""
    raw = env.str(name, default=default)
    low, _, high = raw.partition("-")
    lo, hi = float(low), float(high or low)
    if lo < 0 or hi < lo:
        raise ImproperlyConfigured(f"{name} must be 'min-max' seconds with 0 <= min <= max")
    return lo, hi


# Simulated delay (seconds, uniform in the range) before the job that moves an order INTO the
# stage runs: processing starts 2-5 s after intake, shipping 3-8 s after processing, delivery
# 1-2 s after shipping. Jobs are scheduled with ``schedule_in``; no job sleeps.
PIPELINE_DELAYS = {
    "processing": _seconds_range("PIPELINE_DELAY_PROCESSING", "2-5"),
    "shipped": _seconds_range("PIPELINE_DELAY_SHIPPING", "3-8"),
    "delivered": _seconds_range("PIPELINE_DELAY_DELIVERY", "1-2"),
}
# Probability that a stage fails (the order becomes ``failed`` and its reservation is released).
PIPELINE_FAILURE_RATES = {
    "processing": env.float("PIPELINE_FAILURE_RATE_PROCESSING", default=0.10),
    "shipped": env.float("PIPELINE_FAILURE_RATE_SHIPPING", default=0.05),
    "delivered": env.float("PIPELINE_FAILURE_RATE_DELIVERY", default=0.0),
}
# When set, delays and failures are a deterministic function of (seed, order, stage).
PIPELINE_RANDOM_SEED = env.str("PIPELINE_RANDOM_SEED", default="") or None
# Transient database errors (deadlock, serialization failure, lock timeout, lost connection)
# retry with exponential backoff: base, base**2, base**3 ... seconds; then the order fails.
PIPELINE_MAX_RETRIES = env.int("PIPELINE_MAX_RETRIES", default=5)
PIPELINE_RETRY_BACKOFF_SECONDS = env.int("PIPELINE_RETRY_BACKOFF_SECONDS", default=2)
# A stage job waits at most this long for a row lock before it gives up and retries.
PIPELINE_LOCK_TIMEOUT_MS = env.int("PIPELINE_LOCK_TIMEOUT_MS", default=5000)
# Stale healing: re-defer a stuck order's stage job this many times, then fail the order.
STALE_MAX_RECOVERIES = env.int("STALE_MAX_RECOVERIES", default=3)
# A worker whose heartbeat is older than this is dead: its running jobs are retried.
STALLED_WORKER_SECONDS = env.float("STALLED_WORKER_SECONDS", default=30.0)
WORKER_HEARTBEAT_SECONDS = env.float("WORKER_HEARTBEAT_SECONDS", default=5.0)
# Schedules (cron, in UTC; a sixth field means seconds).
STALE_CHECK_CRON = env.str("STALE_CHECK_CRON", default="* * * * *")
STALLED_JOBS_CRON = env.str("STALLED_JOBS_CRON", default="* * * * *")
DAILY_REPORT_CRON = env.str("DAILY_REPORT_CRON", default="0 0 * * *")
CLEANUP_CRON = env.str("CLEANUP_CRON", default="30 3 * * 0")
RECONCILIATION_CRON = env.str("RECONCILIATION_CRON", default="0 * * * *")
STATISTICS_REFRESH_CRON = env.str("STATISTICS_REFRESH_CRON", default="* * * * *")
# Retention for the weekly clean-up.
AUDIT_RETENTION_DAYS = env.int("AUDIT_RETENTION_DAYS", default=90)
JOB_RETENTION_HOURS = env.int("JOB_RETENTION_HOURS", default=24 * 7)
# Analytics and the operations page: the rollup refresh schedule, how far back each refresh
# looks past the previous one (covers transactions that committed late), the widest window the
# analytics endpoints accept, and how often /ops/ refreshes itself.
ANALYTICS_REFRESH_CRON = env.str("ANALYTICS_REFRESH_CRON", default="* * * * *")
ANALYTICS_REFRESH_OVERLAP_SECONDS = env.int("ANALYTICS_REFRESH_OVERLAP_SECONDS", default=300)
ANALYTICS_MAX_SPAN_DAYS = env.int("ANALYTICS_MAX_SPAN_DAYS", default=92)
OPS_REFRESH_SECONDS = env.int("OPS_REFRESH_SECONDS", default=5)
# How long an Idempotency-Key is remembered: a retry within it gets the stored response; after it
# the key is forgotten (the request runs as a new one) and the clean-up deletes the record.
IDEMPOTENCY_RETENTION_HOURS = env.int("IDEMPOTENCY_RETENTION_HOURS", default=24)

# --- events and webhooks (fulfillment/events.py, services/webhooks.py) ----------------------
# Events are kept this long; the weekly clean-up deletes older ones (and their deliveries).
EVENT_RETENTION_DAYS = env.int("EVENT_RETENTION_DAYS", default=30)
# The dispatcher turns new events into webhook deliveries (cron; a sixth field means seconds).
WEBHOOK_DISPATCH_CRON = env.str("WEBHOOK_DISPATCH_CRON", default="* * * * * *")
# One delivery attempt waits at most this long for the receiver (connect, send, answer).
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=5.0)
# An endpoint failing (no 2xx) for this long is disabled.
WEBHOOK_DISABLE_AFTER_HOURS = env.float("WEBHOOK_DISABLE_AFTER_HOURS", default=72.0)
# Seconds before each retry of a failed delivery (about a day in all), each with +-20 % jitter;
# after the last one the delivery is given up (``failed``) and the endpoint moves on.
WEBHOOK_RETRY_SCHEDULE = [
    float(x)
    for x in env.str(
        "WEBHOOK_RETRY_SCHEDULE", default="5,30,120,600,1800,3600,7200,14400,28800,28800"
    ).split(",")
    if x.strip()
]
# Deliver to loopback, private and link-local addresses (local receivers; make run sets 1).
WEBHOOK_ALLOW_PRIVATE_NETWORKS = env.bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", default=False)

# Backpressure (fulfillment/backpressure.py): the pipeline is "behind" when its oldest due job
# has waited longer than BACKPRESSURE_LAG_SECONDS; /health/ reports it, and with
# BACKPRESSURE_REJECT_INTAKE intake answers 503 + Retry-After meanwhile. The lag is read at most
# once per BACKPRESSURE_CACHE_SECONDS per process.
BACKPRESSURE_LAG_SECONDS = env.float("BACKPRESSURE_LAG_SECONDS", default=30.0)
BACKPRESSURE_REJECT_INTAKE = env.bool("BACKPRESSURE_REJECT_INTAKE", default=False)
BACKPRESSURE_CACHE_SECONDS = env.float("BACKPRESSURE_CACHE_SECONDS", default=1.0)

# The worker's connection pool checks only connections that sat idle (fulfillment.queue).
PROCRASTINATE_ON_APP_READY = "fulfillment.queue.on_app_ready"
PROCRASTINATE_WORKER_DEFAULTS = {
    "update_heartbeat_interval": WORKER_HEARTBEAT_SECONDS,
    "stalled_worker_timeout": STALLED_WORKER_SECONDS,
}


# --- security and hardening ----------------------------------------------------------------
# API keys and roles: fulfillment/auth.py (one policy table). Reads without a key are refused
# unless ALLOW_ANONYMOUS_READS is on (make run's demo turns it on).
ALLOW_ANONYMOUS_READS = env.bool("ALLOW_ANONYMOUS_READS", default=False)

# Throttling (fulfillment/throttling.py) on the Redis cache, "<requests>/<period>" with period
# s|min|h|day; an empty value turns a scope off. Redis down: throttling fails open.
THROTTLE_RATES = {
    "key": env.str("THROTTLE_RATE_KEY", default="1200/min") or None,  # per API key
    "anon": env.str("THROTTLE_RATE_ANON", default="120/min") or None,  # per client IP, no key
}
# Proxies in front of the app whose X-Forwarded-For entries are trusted for the client IP
# (0: use the socket address; X-Forwarded-For is ignored, so clients cannot spoof it).
NINJA_NUM_PROXIES = env.int("NUM_PROXIES", default=0)

# Request bodies: DATA_UPLOAD_MAX_MEMORY_SIZE (MAX_REQUEST_BYTES, above) is enforced before the
# body is read (fulfillment.hardening.BodySizeLimitMiddleware): 413 payload_too_large.

# Security headers (SecurityMiddleware, XFrameOptionsMiddleware; on in every mode).
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

# HTTPS in production (DEBUG off): redirect, HSTS, secure cookies. Behind a TLS-terminating
# proxy set SECURE_PROXY_SSL_HEADER=1 so Django trusts its X-Forwarded-Proto.
_PROD = not DEBUG
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=_PROD)
SECURE_REDIRECT_EXEMPT = [r"^health/"]  # load balancers probe over plain HTTP
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if _PROD else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=_PROD)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=_PROD)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=_PROD)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=_PROD)
if env.bool("SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# CORS (django-cors-headers): closed unless origins are listed, and only for the API.
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_URLS_REGEX = r"^/api/.*$"
CORS_ALLOW_CREDENTIALS = False  # keys travel in headers, never cookies
CORS_ALLOW_HEADERS = [
    "accept",
    "authorization",
    "content-type",
    "idempotency-key",
    "if-match",
    "x-api-key",
    "x-request-id",
    "x-db-position",
]
CORS_EXPOSE_HEADERS = ["retry-after", "x-request-id", "etag", "x-db-position"]


# --- metrics (fulfillment/metrics.py, GET /metrics) -----------------------------------------
# Off: no series are recorded, no HTTP middleware runs and /metrics answers 404. The processes'
# shared series directory is PROMETHEUS_MULTIPROC_DIR, read by prometheus-client itself.
METRICS_ENABLED = env.bool("METRICS_ENABLED", default=True)
# Prometheus sends "Authorization: Bearer <token>"; empty: only admin API keys may scrape.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# The Procrastinate worker serves its own /metrics on this port (0: it does not).
METRICS_WORKER_PORT = env.int("METRICS_WORKER_PORT", default=0)
