"""The configured services really work: PostgreSQL, the Redis cache and channel layer, Celery."""

import uuid

from django.core.cache import cache, caches
from django.db import connection

from helpdesk_site.celery import app as celery_app
from tests.support.channel_layer import assert_redis_channel_layer_delivers_to_groups


def test_database_is_postgresql_when_configured(postgres) -> None:
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version_num")
        assert int(cursor.fetchone()[0]) >= 130000


def test_redis_cache_round_trip(redis_url: str) -> None:
    from django.core.cache.backends.redis import RedisCache

    assert isinstance(caches["default"], RedisCache)
    key = f"test:{uuid.uuid4()}"
    cache.set(key, {"answer": "快递三天到"}, timeout=5)
    assert cache.get(key) == {"answer": "快递三天到"}
    cache.set(f"{key}:n", 0, timeout=5)
    assert cache.incr(f"{key}:n") == 1


def test_redis_channel_layer_delivers_to_groups(redis_url: str) -> None:
    assert_redis_channel_layer_delivers_to_groups()


def test_celery_uses_the_redis_broker(redis_url: str) -> None:
    assert celery_app.conf.broker_url == redis_url
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1)
        assert conn.connected
