"""What the Redis channel layer must do, checked by the tests of the configured backends and of
the suite's own isolation."""

import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer


def assert_redis_channel_layer_delivers_to_groups() -> None:
    """A message sent to a group reaches a channel in it, through the configured Redis layer."""
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
