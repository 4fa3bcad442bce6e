"""Settings shared by every environment.

Every value comes from the environment (12-factor) with a documented default, so that with
nothing configured Kefu runs on embedded defaults: SQLite, an in-memory channel layer, a
local-memory cache and Celery in eager mode. Setting ``REDIS_URL`` switches the channel layer,
the cache and the Celery broker to Redis; ``DATABASE_URL`` switches the database.
"""

from pathlib import Path
from typing import Any

import environ
from django.utils.translation import gettext_lazy as _
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
# A local .env file is a convenience for development; the real environment always wins.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

INSECURE_SECRET_KEY = "django-insecure-kefu-development-key-change-me"  # noqa: S105

SECRET_KEY = env.str("SECRET_KEY", default=INSECURE_SECRET_KEY)
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Key material for secrets stored encrypted at rest (LLM provider API keys). A comma-separated
# list: the first key encrypts, all of them decrypt, so keys can be rotated. When unset, a key
# is derived from SECRET_KEY.
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[])

INSTALLED_APPS = [
    "helpdesk_site.apps.ConsoleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "servestatic.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc served from here, not from a CDN
    "tenants",
    "llm",
    "conversations",
    "knowledge",
    "analytics",
    # Demo data and page, mock LLM: development and tests only (production removes it).
    "devtools",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "tenants.middleware.TenantScopeMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "helpdesk_site.urls"
ASGI_APPLICATION = "helpdesk_site.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
# Persistent connections: the ASGI server reaches the database from worker threads, and
# opening a PostgreSQL connection per call costs more than the query.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
# Health checks stay on, knowingly. Channels runs close_old_connections() around every
# database_sync_to_async hop, which re-arms the check, so the first query of each hop pays a
# "SELECT 1" round trip: measured ~1 per FAQ answer (a group-commit batch shares one) and ~2 per
# widget hello, ~65 µs each against a local PostgreSQL. CONN_MAX_AGE keeps connections younger
# than any proxy's idle timeout, so what the check catches is a database restart or failover:
# without it the hop that finds the broken connection fails, once per worker thread, and a
# failed group-commit batch fails every message in it. DATABASE_CONN_HEALTH_CHECKS=false saves
# the pings.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("DATABASE_CONN_HEALTH_CHECKS", default=True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the demo's ASGI server read while a Celery-eager write is in flight.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
# Connections per event loop of the hot-path client (rate limits, memory, typing, the gateway's
# breaker and answer cache; helpdesk_site/redis.py); a burst beyond them waits up to a second.
REDIS_MAX_CONNECTIONS = env.int("REDIS_MAX_CONNECTIONS", default=50)

# The channel layer's Redis connections, per ASGI process (channels-redis passes the keys of a
# hosts entry to redis-py's ConnectionPool.from_url).
# - socket_timeout: channels-redis waits for messages in BZPOPMIN for up to 5 s
#   (RedisChannelLayer.brpop_timeout); redis-py's default socket timeout is also 5 s, so reply
#   and timeout raced and a busy loop lost the race, killing a consumer and its socket. 15 s
#   leaves a margin and still bounds a hung Redis.
# - max_connections: every group_add/group_discard/group_send holds a connection while it runs,
#   so a burst of closing sockets wants one each, and the pool never shrinks afterwards. Beyond
#   its limit (redis-py's default: 100) a pool fails at once with MaxConnectionsError instead
#   of waiting, and channels-redis always builds this plain ConnectionPool: a waiting (blocking)
#   pool cannot be configured here. The limit is therefore what one process may keep open after
#   a burst; times the number of processes it must stay well under Redis's maxclients (10,000
#   by default), which the cache and Celery share. 10,000 sockets of one process closing at
#   once: with 100, 8,900 of their group leaves failed; with 1,000, 2,700 failed (logged; the
#   memberships lapse with the layer's group expiry) and 890 connections stayed open; with no
#   effective limit, 4,280 stayed open.
CHANNEL_LAYER_SOCKET_TIMEOUT = env.float("CHANNEL_LAYER_SOCKET_TIMEOUT", default=15.0)
CHANNEL_LAYER_MAX_CONNECTIONS = env.int("CHANNEL_LAYER_MAX_CONNECTIONS", default=1000)

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # channels-redis's layer, delivering within the process while Redis is down.
            "BACKEND": "helpdesk_site.channel_layer.DegradingRedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": CHANNEL_LAYER_SOCKET_TIMEOUT,
                        "max_connections": CHANNEL_LAYER_MAX_CONNECTIONS,
                    }
                ],
                "prefix": "kefu:ch",
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "kefu",
            # No timeout by default: a hung Redis would hold a worker thread forever. One retry
            # on a connection error: a pooled connection that died with a Redis restart is
            # replaced instead of failing the first read after it.
            "OPTIONS": {
                "socket_connect_timeout": 1.0,
                "socket_timeout": 1.0,
                "retry": Retry(NoBackoff(), retries=1, supported_errors=(RedisConnectionError,)),
            },
        }
    }
    CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
    CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "kefu",
        }
    }
    CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="memory://")
    CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=True)

CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 300
CELERY_TASK_TIME_LIMIT = 360
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# Conversation lifecycle (conversations/lifecycle.py): idle minutes after which a conversation
# counts as resolved by the assistant, or as abandoned in the queue; the sweep that records
# both runs every CONVERSATION_SWEEP_SECONDS under `celery -A helpdesk_site beat`, and on the
# console's home page for the signed-in tenant (the embedded defaults have no beat).
CONVERSATION_AI_RESOLVED_AFTER_MINUTES = env.int(
    "CONVERSATION_AI_RESOLVED_AFTER_MINUTES", default=30
)
CONVERSATION_ABANDONED_AFTER_MINUTES = env.int("CONVERSATION_ABANDONED_AFTER_MINUTES", default=60)
CONVERSATION_SWEEP_SECONDS = env.int("CONVERSATION_SWEEP_SECONDS", default=60)
CONVERSATION_SWEEP_BATCH = env.int("CONVERSATION_SWEEP_BATCH", default=500)
# Analytics (analytics/rollups.py): the reporting rows are summed into daily rollups (kept for
# ever) and hourly ones (kept ANALYTICS_HOURLY_DAYS days), yesterday and today rebuilt every
# ANALYTICS_ROLLUP_SECONDS by Celery beat; `manage.py analytics_rollup` rebuilds any range.
ANALYTICS_HOURLY_DAYS = env.int("ANALYTICS_HOURLY_DAYS", default=14)
ANALYTICS_ROLLUP_SECONDS = env.int("ANALYTICS_ROLLUP_SECONDS", default=600)
# The embedded defaults have no beat: there the console's home and report pages rebuild the
# signed-in tenant's rollups of yesterday and today before reading them.
ANALYTICS_ROLLUP_ON_VIEW = env.bool("ANALYTICS_ROLLUP_ON_VIEW", default=not REDIS_URL)
# Hot topics and knowledge gaps (analytics/topics.py, analytics/gaps.py) of each tenant's last 7
# days, recomputed every ANALYTICS_TOPICS_SECONDS (daily); `manage.py analytics_topics` any range.
ANALYTICS_TOPICS_SECONDS = env.int("ANALYTICS_TOPICS_SECONDS", default=86400)
CELERY_BEAT_SCHEDULE = {
    "analytics-rollup": {
        "task": "analytics.tasks.analytics_rollup_task",
        "schedule": ANALYTICS_ROLLUP_SECONDS,
        "options": {"expires": ANALYTICS_ROLLUP_SECONDS},
    },
    "analytics-topics": {
        "task": "analytics.tasks.analytics_topics_task",
        "schedule": ANALYTICS_TOPICS_SECONDS,
        "options": {"expires": ANALYTICS_TOPICS_SECONDS},
    },
    "conversations-sweep": {
        "task": "conversations.tasks.conversations_sweep_task",
        "schedule": CONVERSATION_SWEEP_SECONDS,
        # A run that waited longer than the interval is superseded by the next one.
        "options": {"expires": CONVERSATION_SWEEP_SECONDS},
    },
    # Idempotency records past API_IDEMPOTENCY_TTL_SECONDS are deleted (tenants.tasks).
    "idempotency-purge": {
        "task": "tenants.tasks.idempotency_purge_task",
        "schedule": 3600,
        "options": {"expires": 3600},
    },
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = env.str("LANGUAGE_CODE", default="en")
LANGUAGES = [("en", _("English")), ("zh-hans", _("Simplified Chinese"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Only production collects static files; elsewhere they are served from the finders.
STATIC_ROOT = env.str("STATIC_ROOT", default="") or None
STATICFILES_DIRS = [BASE_DIR / "static"]
# Without collectstatic (development and the demo) ServeStatic serves straight from the finders.
SERVESTATIC_USE_FINDERS = True
MEDIA_URL = "media/"
MEDIA_ROOT = env.str("MEDIA_ROOT", default=str(BASE_DIR / "media"))

LOGIN_URL = "admin:login"
# Where people reach this deployment, for links that leave the request (e-mails); no trailing /.
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["tenants.authentication.ApiKeyAuthentication"],
    # Every view declares the key scope it needs (tenants.authentication.HasScope).
    "DEFAULT_PERMISSION_CLASSES": ["tenants.authentication.HasScope"],
    "DEFAULT_THROTTLE_CLASSES": ["helpdesk_site.api.ApiKeyRateThrottle"],
    "DEFAULT_PAGINATION_CLASS": "helpdesk_site.api.CursorPagination",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "helpdesk_site.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "helpdesk_site.api_schema.KefuAutoSchema",
    "COERCE_DECIMAL_TO_STRING": True,
}
# Requests per API key, "N/SECONDS"; a tenant may set its own (Tenant.api_rate_limit).
API_RATE_LIMIT = env.str("API_RATE_LIMIT", default="600/60")
# How long the first response to a POST with an Idempotency-Key is replayed to retries.
API_IDEMPOTENCY_TTL_SECONDS = env.int("API_IDEMPOTENCY_TTL_SECONDS", default=24 * 3600)
# A first request that has not answered after this long is taken for dead (its process was
# killed): a retry with its key runs again instead of hearing "in progress" until the TTL.
API_IDEMPOTENCY_CLAIM_TIMEOUT_SECONDS = env.int(
    "API_IDEMPOTENCY_CLAIM_TIMEOUT_SECONDS", default=10 * 60
)
SPECTACULAR_SETTINGS = {
    "TITLE": "Kefu API",
    "DESCRIPTION": "The REST API of Kefu, the AI customer-service desk. See docs/api.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and docs pages are public: they describe the API and hold no data.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SCHEMA_PATH_PREFIX": "/api/v1",
    # Several models name their states "status": each enum gets its model's name.
    "ENUM_NAME_OVERRIDES": {
        # One name for the error codes, whatever serializer field carries them.
        "ErrorCode": "helpdesk_site.api_schema.error_codes",
        "ConversationStatusEnum": "conversations.models.Conversation.Status",
        "TicketStatusEnum": "conversations.models.Ticket.Status",
        "PriorityEnum": "conversations.models.Priority",
    },
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No badge fetched from the public online validator: the docs load nothing from afar.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
}

EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Kefu <noreply@localhost>")

# Defaults for tenants that have no LLM provider of their own. With no base URL configured the
# built-in offline responder answers from the knowledge base alone.
KEFU_LLM = {
    "BASE_URL": env.str("LLM_BASE_URL", default=""),
    "API_KEY": env.str("LLM_API_KEY", default=""),
    "MODEL": env.str("LLM_MODEL", default="deepseek-chat"),
    "CONNECT_TIMEOUT": env.float("LLM_CONNECT_TIMEOUT", default=5.0),
    "FIRST_TOKEN_TIMEOUT": env.float("LLM_FIRST_TOKEN_TIMEOUT", default=15.0),
    "TOTAL_TIMEOUT": env.float("LLM_TOTAL_TIMEOUT", default=60.0),
}
KEFU_DEFAULT_FAQ_THRESHOLD = env.float("KEFU_DEFAULT_FAQ_THRESHOLD", default=0.8)
# LLM gateway: retries before the first token, circuit breaker, answer cache.
LLM_RETRIES = env.int("LLM_RETRIES", default=2)
LLM_BACKOFF_BASE = env.float("LLM_BACKOFF_BASE", default=0.2)
LLM_BACKOFF_CAP = env.float("LLM_BACKOFF_CAP", default=2.0)
LLM_BREAKER_FAILURES = env.int("LLM_BREAKER_FAILURES", default=5)
LLM_BREAKER_OPEN_SECONDS = env.float("LLM_BREAKER_OPEN_SECONDS", default=30.0)
LLM_ANSWER_CACHE_SECONDS = env.int("LLM_ANSWER_CACHE_SECONDS", default=3600)
# Rate limits, "COUNT/SECONDS" (sliding windows): chat messages per widget visitor and per
# tenant, and contact details per widget visitor (each opens or updates a ticket).
RATE_LIMIT_VISITOR = env.str("RATE_LIMIT_VISITOR", default="20/60")
RATE_LIMIT_TENANT = env.str("RATE_LIMIT_TENANT", default="600/60")
RATE_LIMIT_CONTACT = env.str("RATE_LIMIT_CONTACT", default="5/3600")
# Typing indicators: at most one per conversation and direction in this many seconds (0: all).
TYPING_THROTTLE_SECONDS = env.float("TYPING_THROTTLE_SECONDS", default=2.0)
# The agent console's socket re-reads the agent's membership before every action, and before
# passing on queue and customer events when its last read is older than this.
AGENT_ACCESS_RECHECK_SECONDS = env.float("AGENT_ACCESS_RECHECK_SECONDS", default=1.0)
# Idle seconds after which a conversation's memory is dropped (rebuilt from the database).
CONVERSATION_MEMORY_TTL_SECONDS = env.int("CONVERSATION_MEMORY_TTL_SECONDS", default=1800)
# How often a process checks a tenant's sensitive-word lists for changes.
MODERATION_CHECK_SECONDS = env.float("MODERATION_CHECK_SECONDS", default=1.0)

# Transport loggers write a line per connection or request: uvicorn two per WebSocket connect
# and one per close ("uvicorn.error"; 30,000 lines for 10,000 idle widgets), the LLM client's
# HTTP library one per request next to the gateway's own ("httpx2"/"httpcore2" here,
# "httpx"/"httpcore" for the classic package). TRANSPORT_LOG_LEVEL (default WARNING) is their
# level; INFO shows them again, including uvicorn's startup lines. Django applies LOGGING when
# the ASGI application is imported, after uvicorn has applied its --log-level, so this setting
# wins over that flag. Never list the "uvicorn" logger itself: configuring it would remove
# uvicorn's handler, and it does not propagate, so its errors would vanish.
TRANSPORT_LOG_LEVEL = env.str("TRANSPORT_LOG_LEVEL", default="WARNING")
TRANSPORT_LOGGERS = ("uvicorn.error", "httpx", "httpx2", "httpcore", "httpcore2")

LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "bm25s": {"level": "WARNING"},
        **{name: {"level": TRANSPORT_LOG_LEVEL} for name in TRANSPORT_LOGGERS},
    },
}

# Knowledge search indexes (per process, in memory).
KNOWLEDGE_INDEX_CHECK_SECONDS = env.float("KNOWLEDGE_INDEX_CHECK_SECONDS", default=1.0)
KNOWLEDGE_INDEX_SYNC_LIMIT = env.int("KNOWLEDGE_INDEX_SYNC_LIMIT", default=2000)
KNOWLEDGE_INDEX_BACKGROUND_REBUILD = True
# Documents: what one document may grow into. A file past a cap fails with a message saying
# which; a few kilobytes of PDF can otherwise expand into millions of characters.
KNOWLEDGE_DOCUMENT_MAX_PAGES = env.int("KNOWLEDGE_DOCUMENT_MAX_PAGES", default=1000)
KNOWLEDGE_DOCUMENT_MAX_CHARS = env.int("KNOWLEDGE_DOCUMENT_MAX_CHARS", default=2_000_000)
KNOWLEDGE_DOCUMENT_MAX_CHUNKS = env.int("KNOWLEDGE_DOCUMENT_MAX_CHUNKS", default=4000)
# With Celery eager (the embedded defaults), documents larger than this are processed in a
# background thread rather than in the request that saved them.
KNOWLEDGE_DOCUMENT_INLINE_MAX_BYTES = env.int(
    "KNOWLEDGE_DOCUMENT_INLINE_MAX_BYTES", default=64 * 1024
)
# Without an LLM, a passage is shown only when it speaks to at least this share of the question
# (IDF-weighted words; calibrated by bench/relevance_floor.py, see docs/knowledge.md).
KNOWLEDGE_RELEVANCE_FLOOR = env.float("KNOWLEDGE_RELEVANCE_FLOOR", default=0.3)
# Dense retrieval without a provider embedding model: "local" (needs the local-embeddings
# extra) or "off".
KNOWLEDGE_EMBEDDINGS = env.str("KNOWLEDGE_EMBEDDINGS", default="off")
