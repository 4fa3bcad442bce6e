"""Fail-closed tenant scoping: an unscoped query of a tenant-owned model raises, a tenant's scope
sees that tenant's rows only, and every entry point enters its own scope, whatever scope its
caller had (the test bodies here run with scoping disabled, like every test's)."""

import asyncio
import csv
import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.apps import apps
from django.core.management import call_command
from django.db import connection, models
from django.db.migrations.loader import MigrationLoader
from django.http import HttpRequest, JsonResponse
from django.test import AsyncClient, Client
from django.urls import path
from django.utils import timezone
from django_scopes import get_scope
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.models import KnowledgeGap, ReportRow, Rollup, Topic, TopicMember, TopicPeriod
from conversations import writer
from conversations.agent_consumer import AgentConsumer
from conversations.consumers import WidgetConsumer
from conversations.models import Message, TicketReply
from conversations.services import MessageWritten
from conversations.tasks import conversations_sweep_task
from knowledge import tasks as knowledge_tasks
from knowledge.models import EmbeddingVector, KnowledgeEntry, SensitiveWordList
from tenants import services as tenant_services
from tenants.authentication import ANY_KEY
from tenants.models import IdempotencyRecord, Role, Tenant
from tenants.scoping import (
    ScopeError,
    TenantScopedManager,
    all_tenants,
    scope_entry,
    scoped_tenant_id,
    tenant_scope,
)
from tests.support import factories
from tests.support.sockets import SOCKET_WAIT
from tests.support.writes import question

pytestmark = pytest.mark.django_db(transaction=True)


def _is_tenant_owned(model: type[models.Model]) -> bool:
    field = next((f for f in model._meta.concrete_fields if f.name == "tenant"), None)
    return field is not None and field.related_model is Tenant


TENANT_OWNED = sorted(
    (model for model in apps.get_models() if _is_tenant_owned(model)),
    key=lambda model: model._meta.label,
)


def _ticket_reply(tenant: Tenant) -> TicketReply:
    ticket = factories.TicketFactory.create(tenant=tenant)
    return TicketReply.objects.create(tenant=tenant, ticket=ticket, content="On its way.")


def _vector(tenant: Tenant) -> EmbeddingVector:
    return EmbeddingVector.objects.create(
        tenant=tenant, model="mock-embed", text_hash="0" * 64, dimensions=1, vector=bytes(4)
    )


# One row of each tenant-owned model. A new tenant-owned model fails
# ``test_every_tenant_owned_model_is_covered`` until it has a line here.
ROW_OF: dict[str, Callable[[Tenant], Any]] = {
    "tenants.Membership": lambda t: factories.MembershipFactory(tenant=t),
    "tenants.ApiKey": lambda t: factories.ApiKeyFactory(tenant=t),
    "tenants.LLMProvider": lambda t: factories.LLMProviderFactory(tenant=t),
    "tenants.IdempotencyRecord": lambda t: IdempotencyRecord.objects.create(
        tenant=t,
        api_key_id=factories.ApiKeyFactory(tenant=t).pk,
        key="retry-1",
        fingerprint="0" * 64,
    ),
    "conversations.Customer": lambda t: factories.CustomerFactory(tenant=t),
    "conversations.Conversation": lambda t: factories.ConversationFactory(tenant=t),
    "conversations.Message": lambda t: factories.MessageFactory(
        conversation=factories.ConversationFactory(tenant=t)
    ),
    "conversations.Ticket": lambda t: factories.TicketFactory(tenant=t),
    "conversations.TicketReply": _ticket_reply,
    "conversations.CannedResponse": lambda t: factories.CannedResponseFactory(tenant=t),
    "knowledge.KnowledgeEntry": lambda t: factories.KnowledgeEntryFactory(tenant=t),
    "knowledge.Document": lambda t: factories.DocumentFactory(tenant=t),
    "knowledge.Chunk": lambda t: factories.ChunkFactory(
        document=factories.DocumentFactory(tenant=t)
    ),
    "knowledge.SensitiveWordList": lambda t: factories.SensitiveWordListFactory(tenant=t),
    "knowledge.EmbeddingVector": _vector,
    "analytics.ReportRow": lambda t: ReportRow.objects.create(
        tenant=t, kind=ReportRow.Kind.CONVERSATION_CREATED, occurred_at=timezone.now()
    ),
    "analytics.Rollup": lambda t: Rollup.objects.create(
        tenant=t,
        granularity=Rollup.Granularity.DAY,
        bucket_start=timezone.now(),
        metric="conversations",
    ),
    "analytics.Topic": lambda t: Topic.objects.create(tenant=t, label="Refunds"),
    "analytics.TopicPeriod": lambda t: TopicPeriod.objects.create(
        tenant=t,
        topic=Topic.objects.create(tenant=t, label="Refunds"),
        since=date(2026, 12, 1),
        until=date(2026, 12, 7),
    ),
    "analytics.TopicMember": lambda t: TopicMember.objects.create(
        tenant=t,
        period=TopicPeriod.objects.create(
            tenant=t,
            topic=Topic.objects.create(tenant=t, label="Refunds"),
            since=date(2026, 12, 1),
            until=date(2026, 12, 7),
        ),
        message_id=1,
        conversation_id=1,
    ),
    "analytics.KnowledgeGap": lambda t: KnowledgeGap.objects.create(
        tenant=t, question="Gift cards?", since=date(2026, 12, 1), until=date(2026, 12, 7)
    ),
}


def test_every_tenant_owned_model_is_covered() -> None:
    assert {model._meta.label for model in TENANT_OWNED} == set(ROW_OF)


@pytest.mark.parametrize("model", TENANT_OWNED, ids=lambda model: model._meta.label)
def test_the_default_manager_is_scoped(model: type[models.Model]) -> None:
    assert isinstance(model._default_manager, TenantScopedManager)


@pytest.mark.parametrize("model", TENANT_OWNED, ids=lambda model: model._meta.label)
def test_a_query_without_a_tenant_scope_raises(model: type[models.Model], tenant_a) -> None:
    ROW_OF[model._meta.label](tenant_a)
    manager: Any = model._default_manager
    with scope_entry():
        with pytest.raises(ScopeError):
            manager.all()
        with pytest.raises(ScopeError):
            list(manager.filter(tenant=tenant_a))
        with pytest.raises(ScopeError):
            manager.count()
        with pytest.raises(ScopeError):
            manager.get_queryset().exists()
        with pytest.raises(ScopeError):
            manager.get_queryset().exclude(pk=0)
        with pytest.raises(ScopeError):
            manager.get_queryset().values_list("pk", flat=True)
        with pytest.raises(ScopeError):
            manager.update(updated_at=timezone.now())
        with pytest.raises(ScopeError):
            manager.get_queryset().delete()
        assert "no tenant in scope" in repr(manager.get_queryset())  # logs may show it
    assert manager.filter(tenant=tenant_a).exists()  # nothing was changed


@pytest.mark.parametrize("model", TENANT_OWNED, ids=lambda model: model._meta.label)
def test_a_tenant_scope_sees_only_that_tenants_rows(
    model: type[models.Model], tenant_a, tenant_b
) -> None:
    own = ROW_OF[model._meta.label](tenant_a)
    other = ROW_OF[model._meta.label](tenant_b)
    manager: Any = model._default_manager
    expected = set(
        manager.filter(models.Q(tenant=tenant_a) | models.Q(tenant__isnull=True)).values_list(
            "pk", flat=True
        )
    )

    with tenant_scope(tenant_a.pk):
        seen = set(manager.values_list("pk", flat=True))
        assert not manager.filter(pk=other.pk).exists()

    assert own.pk in seen and other.pk not in seen
    assert seen == expected


def test_a_tenant_sees_its_own_and_the_global_word_lists(tenant_a, tenant_b) -> None:
    own = factories.SensitiveWordListFactory(tenant=tenant_a)
    factories.SensitiveWordListFactory(tenant=tenant_b)
    shared = factories.SensitiveWordListFactory(tenant=None)

    with tenant_scope(tenant_a.pk):
        seen = set(SensitiveWordList.objects.values_list("pk", flat=True))

    assert seen == {own.pk, shared.pk}


def test_related_managers_are_scoped(tenant_a) -> None:
    message = factories.MessageFactory(conversation=factories.ConversationFactory(tenant=tenant_a))
    conversation = message.conversation

    with scope_entry(), pytest.raises(ScopeError):
        list(conversation.messages.all())
    with tenant_scope(tenant_a.pk):
        assert list(conversation.messages.all()) == [message]


def test_migrations_use_plain_managers() -> None:
    """Data migrations read historical models, whose managers are plain (the scoped manager is
    not ``use_in_migrations``): migrations need no scope."""
    state_apps = MigrationLoader(connection).project_state().apps
    for model in TENANT_OWNED:
        historical = state_apps.get_model(model._meta.label)
        assert not isinstance(historical._default_manager, TenantScopedManager)


def test_a_scope_takes_a_tenant_id_only(tenant_a) -> None:
    with pytest.raises(TypeError):
        tenant_scope(None)
    with pytest.raises(TypeError):
        tenant_scope(tenant_a)


def test_a_queryset_keeps_the_scope_it_was_made_in(tenant_a, tenant_b) -> None:
    own = factories.KnowledgeEntryFactory(tenant=tenant_a)
    factories.KnowledgeEntryFactory(tenant=tenant_b)
    with tenant_scope(tenant_a.pk):
        entries = KnowledgeEntry.objects.all()

    with scope_entry():
        assert list(entries) == [own]


# What product code run through an entry point sees ----------------------------------------------


def _probe() -> dict[str, Any]:
    try:
        questions: list[str] | None = sorted(
            KnowledgeEntry.objects.values_list("question", flat=True)
        )
    except ScopeError:
        questions = None
    return {
        "enabled": get_scope().get("_enabled", True),
        "tenant": scoped_tenant_id(),
        "questions": questions,
    }


@pytest.fixture
def entries(tenant_a, tenant_b) -> None:
    factories.KnowledgeEntryFactory(tenant=tenant_a, question="A?")
    factories.KnowledgeEntryFactory(tenant=tenant_b, question="B?")


def _unscoped_in_test_body() -> None:
    assert get_scope().get("_enabled") is False, "the test body's own scope was changed"


def scope_probe_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_probe())


class ScopeProbeApi(APIView):
    required_scope = ANY_KEY

    def get(self, request: Request) -> Response:
        return Response(_probe())


async def scope_probe_async_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(await database_sync_to_async(_probe)())


urlpatterns = [
    path("probe/", scope_probe_view),
    path("async-probe/", scope_probe_async_view),
    path("api/probe/", ScopeProbeApi.as_view()),
]


@pytest.mark.urls(__name__)
def test_a_console_request_runs_in_the_members_active_tenant(entries, tenant_a) -> None:
    user = factories.UserFactory()
    factories.MembershipFactory(user=user, tenant=tenant_a, role=Role.AGENT)
    client = Client()
    client.force_login(user)

    assert client.get("/probe/").json() == {
        "enabled": True,
        "tenant": tenant_a.pk,
        "questions": ["A?"],
    }
    _unscoped_in_test_body()


@pytest.mark.urls(__name__)
def test_an_anonymous_request_has_no_tenant(entries) -> None:
    assert Client().get("/probe/").json() == {"enabled": True, "tenant": None, "questions": None}


@pytest.mark.urls(__name__)
def test_a_superusers_request_covers_every_tenant(entries, superuser_client) -> None:
    assert superuser_client.get("/probe/").json() == {
        "enabled": False,
        "tenant": None,
        "questions": ["A?", "B?"],
    }


@pytest.mark.urls(__name__)
@pytest.mark.parametrize("url", ["/async-probe/", "/probe/"])
async def test_requests_served_asynchronously_get_the_same_scopes(
    entries, tenant_a, url: str
) -> None:
    """Under ASGI the middleware stays on the event loop; an async view and a sync one (run in
    a thread by Django) see the scope a sync request would."""
    user, superuser = await database_sync_to_async(_member_and_superuser)(tenant_a)
    member, admin = AsyncClient(), AsyncClient()
    await member.aforce_login(user)
    await admin.aforce_login(superuser)

    assert (await AsyncClient().get(url)).json() == {
        "enabled": True,
        "tenant": None,
        "questions": None,
    }
    assert (await member.get(url)).json() == {
        "enabled": True,
        "tenant": tenant_a.pk,
        "questions": ["A?"],
    }
    assert (await admin.get(url)).json() == {
        "enabled": False,
        "tenant": None,
        "questions": ["A?", "B?"],
    }
    _unscoped_in_test_body()


def _member_and_superuser(tenant: Tenant) -> tuple[Any, Any]:
    user = factories.UserFactory()
    factories.MembershipFactory(user=user, tenant=tenant, role=Role.AGENT)
    return user, factories.UserFactory(is_superuser=True, is_staff=True)


@pytest.mark.urls(__name__)
def test_an_api_request_runs_in_its_keys_tenant(entries, tenant_b) -> None:
    issued = tenant_services.api_key_issue(tenant=tenant_b, name="probe", scopes=[])

    response = Client().get("/api/probe/", HTTP_AUTHORIZATION=f"Bearer {issued.raw_key}")

    assert response.json() == {"enabled": True, "tenant": tenant_b.pk, "questions": ["B?"]}
    _unscoped_in_test_body()


class ProbingWidget(WidgetConsumer):
    """Answers a ping with what the socket's database calls see."""

    async def on_ping(self, frame: Any) -> None:
        probe = await database_sync_to_async(_probe)()
        await self.send(text_data=json.dumps({"type": "probe", **probe}))


class ProbingAgentConsole(AgentConsumer):
    async def on_ping(self, frame: Any) -> None:
        probe = await database_sync_to_async(_probe)()
        await self.send(text_data=json.dumps({"type": "probe", **probe}))


async def _probe_frame(communicator: WebsocketCommunicator) -> dict[str, Any]:
    connected, code = await communicator.connect(timeout=SOCKET_WAIT)
    assert connected, code
    try:
        await communicator.send_json_to({"type": "ping"})
        while True:
            frame = await communicator.receive_json_from(timeout=SOCKET_WAIT)
            if frame["type"] == "probe":  # the widget's frames carry a protocol version too
                return {key: frame[key] for key in ("enabled", "tenant", "questions")}
    finally:
        await communicator.disconnect()


async def test_a_widget_socket_runs_in_its_public_keys_tenant(entries, tenant_a) -> None:
    await database_sync_to_async(Tenant.objects.filter(pk=tenant_a.pk).update)(
        allowed_origins=["https://shop.example.com"]
    )
    communicator = WebsocketCommunicator(
        ProbingWidget.as_asgi(),
        f"/ws/widget/{tenant_a.public_key}/",
        headers=[(b"origin", b"https://shop.example.com"), (b"host", b"kefu.example.com")],
    )
    communicator.scope["url_route"] = {"args": (), "kwargs": {"public_key": tenant_a.public_key}}

    frame = await _probe_frame(communicator)

    assert frame == {"enabled": True, "tenant": tenant_a.pk, "questions": ["A?"]}
    _unscoped_in_test_body()


async def test_an_agent_socket_runs_in_the_agents_tenant(entries, tenant_b) -> None:
    user = await database_sync_to_async(factories.UserFactory)()
    await database_sync_to_async(factories.MembershipFactory)(
        user=user, tenant=tenant_b, role=Role.AGENT
    )
    communicator = WebsocketCommunicator(ProbingAgentConsole.as_asgi(), "/ws/agent/")
    communicator.scope["user"] = user
    communicator.scope["session"] = {}

    frame = await _probe_frame(communicator)

    assert frame == {"enabled": True, "tenant": tenant_b.pk, "questions": ["B?"]}
    _unscoped_in_test_body()


def test_a_celery_task_runs_in_its_tenant_argument(entries, tenant_a, monkeypatch) -> None:
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(
        "knowledge.services.document_process", lambda **kwargs: seen.append(_probe())
    )

    knowledge_tasks.document_process_task.delay(1, tenant_a.pk)

    assert seen == [{"enabled": True, "tenant": tenant_a.pk, "questions": ["A?"]}]
    _unscoped_in_test_body()


def test_the_sweep_task_covers_one_tenant_or_says_it_covers_all(
    entries, tenant_b, monkeypatch
) -> None:
    seen: list[dict[str, Any]] = []

    def sweep(**kwargs: Any) -> dict:
        seen.append(_probe())
        return {}

    monkeypatch.setattr("conversations.tasks.conversations_sweep", sweep)

    conversations_sweep_task.delay(tenant_b.pk)
    conversations_sweep_task.delay()

    assert seen == [
        {"enabled": True, "tenant": tenant_b.pk, "questions": ["B?"]},
        {"enabled": False, "tenant": None, "questions": ["A?", "B?"]},
    ]


def test_the_sweep_command_covers_one_tenant_or_says_it_covers_all(
    entries, tenant_a, monkeypatch
) -> None:
    seen: list[dict[str, Any]] = []

    def sweep(**kwargs: Any) -> dict:
        seen.append(_probe())
        return {}

    command = "conversations.management.commands.conversations_sweep"
    monkeypatch.setattr(f"{command}.conversations_sweep", sweep)

    call_command("conversations_sweep", "--tenant", str(tenant_a.pk))
    call_command("conversations_sweep")

    assert seen == [
        {"enabled": True, "tenant": tenant_a.pk, "questions": ["A?"]},
        {"enabled": False, "tenant": None, "questions": ["A?", "B?"]},
    ]
    _unscoped_in_test_body()


def test_a_management_command_starts_with_no_tenant(
    entries, tmp_path: Path, monkeypatch, capsys
) -> None:
    """``kb_eval`` works in the throwaway tenant it makes, and sees nothing else."""
    kb, queries = tmp_path / "kb.csv", tmp_path / "queries.csv"
    with kb.open("w", newline="") as handle:
        csv.writer(handle).writerows([["key", "question", "answer"], ["k", "Q?", "Yes."]])
    with queries.open("w", newline="") as handle:
        csv.writer(handle).writerows([["question", "expected_key"], ["Q?", "k"]])
    seen: list[dict[str, Any]] = []

    def candidates(**kwargs: Any) -> list:
        seen.append(_probe())
        return []

    monkeypatch.setattr("knowledge.evaluation.faq_candidates", candidates)

    call_command("kb_eval", "--kb", str(kb), "--queries", str(queries), "--json")

    assert len(seen) == 1
    assert seen[0]["enabled"] and seen[0]["questions"] == ["Q?"]
    assert seen[0]["tenant"] not in (None, *Tenant.objects.values_list("pk", flat=True))
    _unscoped_in_test_body()


async def test_the_message_writer_stores_many_tenants_from_one_tenants_scope(
    tenant_a, tenant_b
) -> None:
    def arrange() -> list:
        writes = []
        for tenant in (tenant_a, tenant_b):
            entry = factories.KnowledgeEntryFactory(tenant=tenant)
            writes.append(question(factories.ConversationFactory(tenant=tenant), "m1", entry))
        return writes

    writes = await database_sync_to_async(arrange)()

    async def socket_of_tenant_a() -> list[MessageWritten]:
        # A socket's task is in its tenant's scope when it starts the writer's batch.
        with tenant_scope(tenant_a.pk):
            return list(await asyncio.gather(*(writer.message_write(w) for w in writes)))

    results = await asyncio.create_task(socket_of_tenant_a())

    assert all(isinstance(result, MessageWritten) for result in results)
    with all_tenants("the test checks both tenants' rows"):
        stored = await database_sync_to_async(
            lambda: sorted(Message.objects.values_list("tenant_id", flat=True))
        )()
    assert stored == sorted([tenant_a.pk] * 2 + [tenant_b.pk] * 2)
