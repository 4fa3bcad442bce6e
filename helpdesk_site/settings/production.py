"""Production settings: the base settings hardened, refusing to start with unsafe values."""

from django.core.exceptions import ImproperlyConfigured

from helpdesk_site.settings.base import *  # noqa: F403
from helpdesk_site.settings.base import (
    ALLOWED_HOSTS,
    BASE_DIR,
    DATABASES,
    INSECURE_SECRET_KEY,
    INSTALLED_APPS,
    REDIS_URL,
    SECRET_KEY,
    env,
)

DEBUG = False
# Development tools are not shipped: the demo shop would show a tenant's widget to anyone (its
# /demo/ route goes with the app), and the demo and mockllm commands have no place in production.
INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "devtools"]
# No localhost default: links in e-mails must point at the public host (check --deploy).
SITE_URL = env.str("SITE_URL", default="").rstrip("/")


def _refuse(message: str) -> None:
    raise ImproperlyConfigured(f"Unsafe production configuration: {message}")


if SECRET_KEY == INSECURE_SECRET_KEY or len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
    _refuse("set SECRET_KEY to a random value of at least 50 characters.")
if env.bool("DEBUG", default=False):
    _refuse("DEBUG must be off.")
if not ALLOWED_HOSTS or "*" in ALLOWED_HOSTS:
    _refuse("set ALLOWED_HOSTS to the host names Kefu is served on.")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3" and not env.bool(
    "ALLOW_SQLITE_IN_PRODUCTION", default=False
):
    _refuse("set DATABASE_URL to a PostgreSQL database.")
if not REDIS_URL:
    # Several ASGI and Celery processes must share the channel layer, cache and broker.
    _refuse("set REDIS_URL; the in-memory channel layer cannot span processes.")

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "servestatic.storage.CompressedManifestStaticFilesStorage"},
}
SERVESTATIC_USE_FINDERS = False
STATIC_ROOT = env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
X_FRAME_OPTIONS = "DENY"
