"""Settings for the test suite: the base settings with fast hashing and quiet logging.

The database, cache and channel layer follow ``DATABASE_URL`` and ``REDIS_URL`` exactly as in
production, so the same suite runs on embedded defaults and on PostgreSQL with Redis.
"""

from helpdesk_site.settings.base import *  # noqa: F403
from helpdesk_site.settings.base import DATABASES, LOGGING

# Tests create and drop databases: no connection may outlive its test.
DATABASES["default"]["CONN_MAX_AGE"] = 0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
CELERY_TASK_ALWAYS_EAGER = True
LOGGING["root"]["level"] = "WARNING"
# Tests see their own writes at once: rebuild in the request that notices the change.
KNOWLEDGE_INDEX_CHECK_SECONDS = 0.0
KNOWLEDGE_INDEX_BACKGROUND_REBUILD = False
MODERATION_CHECK_SECONDS = 0.0
# The same figures (and queries) in both configurations; the tests that want it turn it on.
ANALYTICS_ROLLUP_ON_VIEW = False
