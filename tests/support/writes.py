"""Message writes for the group-commit writer's tests: a customer's question with its FAQ
answer, as the answer path hands them to ``conversations.writer``."""

from conversations.models import Conversation
from conversations.services import AnswerRecord, CustomerText, MessageWrite
from knowledge.models import KnowledgeEntry


def faq_answer(entry: KnowledgeEntry) -> AnswerRecord:
    return AnswerRecord(content=entry.answer, source="faq", knowledge_refs=(f"faq-{entry.pk}",))


def question(conversation: Conversation, client_id: str, entry: KnowledgeEntry) -> MessageWrite:
    return MessageWrite(
        tenant_id=conversation.tenant_id,
        conversation_id=conversation.pk,
        customer=CustomerText(client_id, "Delivery?"),
        answer=faq_answer(entry),
        faq_entry_id=entry.pk,
    )
