"""Objects for the REST API's path parameters, named as in docs/api.md's endpoint table: the
schema-wide tests (scope matrix, fuzzing) fill every ``{name}`` of every path with them."""

from django.db.models import Model

from tenants.models import Tenant
from tests.support.factories import (
    CannedResponseFactory,
    ChunkFactory,
    ConversationFactory,
    CustomerFactory,
    DocumentFactory,
    KnowledgeEntryFactory,
    MessageFactory,
    TicketFactory,
)


def path_parameter_objects(tenant: Tenant) -> dict[str, Model]:
    """One object of ``tenant`` per path parameter name, related the way nested paths need
    (the chunk belongs to the document, the message to the conversation). A path parameter of
    a new endpoint needs an entry here, or the scope matrix fails."""
    customer = CustomerFactory.create(tenant=tenant)
    conversation = ConversationFactory.create(tenant=tenant, customer=customer)
    document = DocumentFactory.create(tenant=tenant)
    return {
        "customer_id": customer,
        "conversation_id": conversation,
        "message_id": MessageFactory.create(conversation=conversation),
        "ticket_id": TicketFactory.create(tenant=tenant, customer=customer),
        "faq_id": KnowledgeEntryFactory.create(tenant=tenant),
        "document_id": document,
        "chunk_id": ChunkFactory.create(document=document),
        "canned_response_id": CannedResponseFactory.create(tenant=tenant),
    }
