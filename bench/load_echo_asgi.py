"""Phase A's second ceiling: the smallest Channels echo consumer, served by uvicorn exactly as
Kefu is (same settings, so the same channel layer). What a widget answer costs beyond this is
the product's own work.

    uvicorn bench.load_echo_asgi:application --lifespan off --no-access-log --workers 1
"""

import json
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "helpdesk_site.settings.base")
get_asgi_application()  # sets Django up before Channels is imported

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402


class EchoConsumer(AsyncWebsocketConsumer):
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is not None:
            await self.send(text_data=json.dumps(json.loads(text_data), ensure_ascii=False))


application = ProtocolTypeRouter(
    {"websocket": URLRouter([path("ws/echo/", EchoConsumer.as_asgi())])}
)
