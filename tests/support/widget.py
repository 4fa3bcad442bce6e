"""The widget's socket as a test's customer sees it: a client that says hello, asks and reads
the answer's frames, and the mock LLM as a tenant's provider."""

import json
from typing import Any

from channels.testing import WebsocketCommunicator

from devtools.mockllm import MockLLMServer
from helpdesk_site.asgi import application
from tests.support import factories
from tests.support.sockets import SOCKET_WAIT

ORIGIN = "https://shop.example.com"


def provider(tenant, server: MockLLMServer, **fields: Any):
    defaults = {"base_url": server.base_url, "model": "kefu-mock", "first_token_timeout": 2.0}
    return factories.LLMProviderFactory(tenant=tenant, **(defaults | fields))


class Widget:
    def __init__(self, tenant) -> None:
        self.communicator = WebsocketCommunicator(
            application,
            f"/ws/widget/{tenant.public_key}/",
            headers=[(b"origin", ORIGIN.encode()), (b"host", b"kefu.example.com")],
        )
        self.welcome: dict[str, Any] = {}

    async def open(self, **hello: Any) -> dict[str, Any]:
        connected, _ = await self.communicator.connect(timeout=SOCKET_WAIT)
        assert connected
        await self.send({"type": "hello", **hello})
        welcome = await self.receive()
        assert welcome["type"] == "welcome"
        return welcome

    async def send(self, frame: dict[str, Any]) -> None:
        await self.communicator.send_to(text_data=json.dumps(frame))

    async def receive(self, wait: float = SOCKET_WAIT) -> dict[str, Any]:
        frame = json.loads(await self.communicator.receive_from(timeout=wait))
        if frame["type"] == "welcome":
            self.welcome = frame
        elif frame.get("conversation_id") and self.welcome.get("conversation_id") is None:
            # A conversation starts with its first message: the welcome (which tests keep)
            # learns its id from the message's acknowledgement.
            self.welcome["conversation_id"] = frame["conversation_id"]
        return frame

    async def ask(self, text: str, message_id: str) -> list[dict[str, Any]]:
        """Sends a message; returns every frame up to its `done`, `error` or `status`."""
        await self.send({"type": "message", "id": message_id, "text": text})
        frames = []
        while True:
            frame = await self.receive()
            frames.append(frame)
            if frame["type"] in ("done", "error", "status") or frame.get("duplicate"):
                return frames

    async def close(self) -> None:
        await self.communicator.disconnect()


def text_of(frames: list[dict[str, Any]]) -> str:
    return "".join(f["text"] for f in frames if f["type"] == "delta")
