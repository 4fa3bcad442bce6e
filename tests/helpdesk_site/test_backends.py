"""The configured services really work: PostgreSQL, the Redis cache and channel layer, Celery."""

import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import cache, caches
from django.db import connection

from helpdesk_site.celery import app as celery_app


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
    from helpdesk_site.channel_layer import DegradingRedisChannelLayer

    layer = get_channel_layer()
    assert isinstance(layer, DegradingRedisChannelLayer)

    async def exchange() -> dict:
        channel = await layer.new_channel()
        group = f"tenant-1.conversation-{uuid.uuid4().hex}"
        await layer.group_add(group, channel)
        await layer.group_send(group, {"type": "chat.message", "text": "你好"})
        message = await layer.receive(channel)
        await layer.group_discard(group, channel)
        return message

    assert async_to_sync(exchange)() == {"type": "chat.message", "text": "你好"}


def test_celery_uses_the_redis_broker(redis_url: str) -> None:
    assert celery_app.conf.broker_url == redis_url
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1)
        assert conn.connected
