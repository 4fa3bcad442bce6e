"""WebSocket consumers. They route frames and check access; the work happens in services."""

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from channels.generic.websocket import AsyncWebsocketConsumer
from django.utils import translation
from django.utils.translation import gettext_lazy as _

from tenants.models import Tenant

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 16 * 1024
CLOSE_FORBIDDEN = 4403


def origin_allowed(*, origin: str, host: str, allowed_origins: list[str]) -> bool:
    """An embedding page may connect if its origin is listed, or if it is Kefu's own host."""
    if not origin:
        return False
    normalised = origin.rstrip("/").lower()
    if normalised in allowed_origins:
        return True
    return bool(host) and urlsplit(normalised).netloc == host.lower()


class WidgetConsumer(AsyncWebsocketConsumer):
    """The customer widget's socket: ``/ws/widget/<public_key>/``."""

    tenant: Tenant
    language: str

    async def connect(self) -> None:
        public_key = self.scope["url_route"]["kwargs"]["public_key"]
        tenant = await Tenant.objects.filter(public_key=public_key, is_active=True).afirst()
        headers = {
            name.decode("latin1"): value.decode("latin1") for name, value in self.scope["headers"]
        }
        if tenant is None or not origin_allowed(
            origin=headers.get("origin", ""),
            host=headers.get("host", ""),
            allowed_origins=tenant.allowed_origins,
        ):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.tenant = tenant
        self.language = tenant.default_language
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None or len(text_data.encode()) > MAX_FRAME_BYTES:
            await self.send_error("bad_frame", _("Frames must be JSON text of at most 16 KB."))
            return
        try:
            frame = json.loads(text_data)
        except ValueError:
            await self.send_error("bad_json", _("The frame is not valid JSON."))
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            await self.send_error("bad_frame", _("A frame is a JSON object with a “type”."))
            return
        handler = getattr(self, f"on_{frame['type']}", None)
        if handler is None:
            await self.send_error("unknown_type", _("Unknown frame type."))
            return
        await handler(frame)

    async def on_ping(self, frame: dict[str, Any]) -> None:
        await self.send_frame({"type": "pong", "id": frame.get("id")})

    async def send_frame(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps({"v": PROTOCOL_VERSION, **frame}, ensure_ascii=False))

    async def send_error(self, code: str, text: "StrOrPromise") -> None:
        with translation.override(self.language):
            await self.send_frame({"type": "error", "code": code, "text": str(text)})
