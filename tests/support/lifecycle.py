"""Conversations made to look a certain age or state, for the tests of what happens to them
over time."""

from datetime import timedelta
from typing import Any

from django.utils import timezone

from conversations.models import Conversation, Message
from tests.support import factories


def idle(conversation: Conversation, minutes: float) -> None:
    """Makes a conversation look as if nothing happened in it for ``minutes``."""
    then = timezone.now() - timedelta(minutes=minutes)
    changes: dict[str, Any] = {"last_message_at": then}
    if conversation.status == Conversation.Status.QUEUED:
        changes["queued_at"] = then
    Conversation.objects.filter(pk=conversation.pk).update(**changes)


def queued(tenant) -> Conversation:
    conversation = factories.ConversationFactory.create(
        tenant=tenant,
        status=Conversation.Status.QUEUED,
        handoff_reason=Conversation.HandoffReason.CUSTOMER_REQUEST,
        queued_at=timezone.now(),
    )
    factories.MessageFactory(
        conversation=conversation, role=Message.Role.CUSTOMER, content="转人工"
    )
    return conversation
