"""The agent console's socket as a test's agent sees it, and a shop with agents to staff it."""

import pytest
from channels.testing import WebsocketCommunicator

from conversations.agent_consumer import AgentConsumer
from knowledge import services as knowledge_services
from tenants.models import Role
from tests.support import factories
from tests.support.sockets import SOCKET_WAIT


@pytest.fixture
def shop(db):
    tenant = factories.TenantFactory(
        slug="shop", allowed_origins=["https://shop.example.com"], default_language="en"
    )
    factories.KnowledgeEntryFactory(
        tenant=tenant, question="How long does delivery take?", answer="3–5 working days."
    )
    knowledge_services.knowledge_changed(tenant_id=tenant.pk)
    return tenant


def member(tenant, username: str | None = None, role: str = Role.AGENT, **fields):
    """A new user with ``role`` in ``tenant`` (``fields``: the user's, e.g. email)."""
    if username is not None:
        fields["username"] = username
    user = factories.UserFactory(**fields)
    factories.MembershipFactory(user=user, tenant=tenant, role=role)
    return user


class Console:
    def __init__(self, user) -> None:
        self.communicator = WebsocketCommunicator(AgentConsumer.as_asgi(), "/ws/agent/")
        self.communicator.scope["user"] = user
        self.communicator.scope["session"] = {}

    async def open(self) -> dict:
        connected, code = await self.communicator.connect(timeout=SOCKET_WAIT)
        assert connected, code
        return await self.receive("lists")

    async def send(self, frame: dict) -> None:
        await self.communicator.send_json_to(frame)

    async def receive(self, kind: str) -> dict:
        """The next frame of type ``kind`` (others, such as list refreshes, are skipped)."""
        while True:
            frame = await self.communicator.receive_json_from(timeout=SOCKET_WAIT)
            if frame["type"] == kind:
                return frame

    async def close(self) -> None:
        await self.communicator.disconnect()
