"""Customer questions planted in a tenant's conversations, for the hot-topic and knowledge-gap
tests: four subjects (two English, two Chinese) asked in many phrasings, and some noise."""

from datetime import datetime, timedelta

from django.utils import timezone

from conversations.models import Conversation, Message
from tests.support.factories import ConversationFactory, CustomerFactory, MessageFactory

SUBJECTS = {
    "refund": [
        "How do I get a refund?",
        "I want a refund",
        "refund please",
        "how can I request a refund",
        "Can I get a refund for this?",
        "refund status",
        "refund not received yet",
        "how many days for a refund",
        "is my refund processed",
    ],
    "package": [
        "Where is my package?",
        "package tracking",
        "track my package",
        "has my package shipped",
        "package is late",
        "where is my package now",
        "lost package",
        "package tracking number",
        "package not delivered",
    ],
    "password": [
        "忘记密码怎么办",
        "密码忘了怎么找回",
        "怎么重置密码",
        "登录密码忘记了",
        "密码错误登录不了",
        "密码找回",
        "我想重置我的密码",
        "账号密码忘记了怎么登录",
    ],
    "invoice": [
        "怎么开发票",
        "能开发票吗",
        "发票怎么申请",
        "我需要开具增值税发票",
        "电子发票在哪里下载",
        "发票抬头怎么填",
        "如何开具发票",
        "发票什么时候寄出",
    ],
}
NOISE = [
    "do you sell gift cards",
    "你们周末上班吗",
    "is the blue one in stock",
    "the app crashes on start",
    "what colours are available",
    "营业时间是几点",
]


def at(message: Message, when: datetime) -> Message:
    Message.objects.filter(pk=message.pk).update(created_at=when)
    message.created_at = when
    return message


def ask(
    tenant,
    text: str,
    *,
    when: datetime | None = None,
    customer=None,
    conversation: Conversation | None = None,
    answer: str | None = None,
    **answer_fields,
) -> Message:
    """A customer message (in a new conversation unless one is given), with the assistant's
    answer a second later when ``answer`` is given (``answer_fields``: source, confidence,
    feedback)."""
    when = when or timezone.now() - timedelta(minutes=5)
    if conversation is None:
        customer = customer or CustomerFactory.create(tenant=tenant)
        conversation = ConversationFactory.create(tenant=tenant, customer=customer)
    question = at(
        MessageFactory.create(conversation=conversation, role=Message.Role.CUSTOMER, content=text),
        when,
    )
    if answer is not None:
        at(
            MessageFactory(
                conversation=conversation,
                role=Message.Role.ASSISTANT,
                content=answer,
                **answer_fields,
            ),
            when + timedelta(seconds=1),
        )
    return question


def plant(tenant, *, when: datetime | None = None, noise: bool = True) -> dict[str, list[Message]]:
    """Every subject's phrasings, each asked in a conversation of its own (and the noise)."""
    asked = {
        subject: [ask(tenant, text, when=when) for text in phrasings]
        for subject, phrasings in SUBJECTS.items()
    }
    if noise:
        asked["noise"] = [ask(tenant, text, when=when) for text in NOISE]
    return asked
