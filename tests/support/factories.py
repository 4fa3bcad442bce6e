import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User

from conversations.models import (
    CannedResponse,
    Channel,
    Conversation,
    Customer,
    Message,
    Ticket,
)
from knowledge.models import Chunk, Document, KnowledgeEntry, SensitiveWordList
from tenants.models import ApiKey, LLMProvider, Membership, Role, Tenant


class TenantFactory(factory.django.DjangoModelFactory[Tenant]):
    class Meta:
        model = Tenant
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Shop {n}")
    slug = factory.Sequence(lambda n: f"shop-{n}")


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("pass-word-123")


class MembershipFactory(factory.django.DjangoModelFactory[Membership]):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    tenant = factory.SubFactory(TenantFactory)
    role = Role.AGENT


class CustomerFactory(factory.django.DjangoModelFactory[Customer]):
    class Meta:
        model = Customer

    tenant = factory.SubFactory(TenantFactory)
    channel = Channel.WIDGET
    external_id = factory.Sequence(lambda n: f"visitor-{n}")
    display_name = factory.Sequence(lambda n: f"Customer {n}")


class ConversationFactory(factory.django.DjangoModelFactory[Conversation]):
    class Meta:
        model = Conversation

    tenant = factory.SubFactory(TenantFactory)
    customer = factory.SubFactory(CustomerFactory, tenant=factory.SelfAttribute("..tenant"))


class MessageFactory(factory.django.DjangoModelFactory[Message]):
    class Meta:
        model = Message

    conversation = factory.SubFactory(ConversationFactory)
    tenant = factory.SelfAttribute("conversation.tenant")
    role = Message.Role.CUSTOMER
    content = "Where is my order?"


class TicketFactory(factory.django.DjangoModelFactory[Ticket]):
    class Meta:
        model = Ticket

    tenant = factory.SubFactory(TenantFactory)
    customer = factory.SubFactory(CustomerFactory, tenant=factory.SelfAttribute("..tenant"))
    subject = factory.Sequence(lambda n: f"Problem {n}")


class KnowledgeEntryFactory(factory.django.DjangoModelFactory[KnowledgeEntry]):
    class Meta:
        model = KnowledgeEntry

    tenant = factory.SubFactory(TenantFactory)
    question = factory.Sequence(lambda n: f"Question {n}?")
    answer = factory.Sequence(lambda n: f"Answer {n}.")


class DocumentFactory(factory.django.DjangoModelFactory[Document]):
    class Meta:
        model = Document

    tenant = factory.SubFactory(TenantFactory)
    title = factory.Sequence(lambda n: f"Guide {n}")
    content = "# Guide\n\nSome text."


class ChunkFactory(factory.django.DjangoModelFactory[Chunk]):
    class Meta:
        model = Chunk

    document = factory.SubFactory(DocumentFactory)
    tenant = factory.SelfAttribute("document.tenant")
    ordinal = factory.Sequence(lambda n: n)
    content = "Some text."


class SensitiveWordListFactory(factory.django.DjangoModelFactory[SensitiveWordList]):
    class Meta:
        model = SensitiveWordList

    tenant = factory.SubFactory(TenantFactory)
    name = factory.Sequence(lambda n: f"List {n}")
    words = "badword\nworse word"


class LLMProviderFactory(factory.django.DjangoModelFactory[LLMProvider]):
    class Meta:
        model = LLMProvider

    tenant = factory.SubFactory(TenantFactory)
    name = "Primary"
    base_url = "http://127.0.0.1:9/v1"
    model = "mock-chat"
    api_key = "sk-test-secret-value"


class ApiKeyFactory(factory.django.DjangoModelFactory[ApiKey]):
    class Meta:
        model = ApiKey

    tenant = factory.SubFactory(TenantFactory)
    name = "Integration"
    prefix = factory.Sequence(lambda n: f"p{n:07d}")
    key_hash = factory.Sequence(lambda n: f"{n:064d}")


class CannedResponseFactory(factory.django.DjangoModelFactory[CannedResponse]):
    class Meta:
        model = CannedResponse

    tenant = factory.SubFactory(TenantFactory)
    title = factory.Sequence(lambda n: f"Greeting {n}")
    text = "Hello! How can I help?"
