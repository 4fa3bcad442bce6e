"""The console overview's figures."""

from datetime import timedelta

import pytest
from django.utils import timezone

from analytics.selectors import tenant_overview
from conversations.models import Conversation
from tests.support import factories

pytestmark = pytest.mark.django_db

AI = Conversation.ResolutionKind.AI
ABANDONED = Conversation.ResolutionKind.ABANDONED


def _talked(tenant, **fields):
    """A conversation in which the customer said something (a page view alone counts for
    nothing)."""
    conversation = factories.ConversationFactory(tenant=tenant, **fields)
    factories.MessageFactory(
        conversation=conversation, tenant=tenant, role="customer", content="Hi"
    )
    return conversation


def test_the_overview_counts_ai_resolutions_and_abandoned_conversations(tenant_a, tenant_b) -> None:
    for kind in (AI, AI, ABANDONED, Conversation.ResolutionKind.AGENT, ""):
        _talked(tenant_a, resolution_kind=kind)
    _talked(tenant_b, resolution_kind=AI)
    _talked(tenant_b, resolution_kind=ABANDONED)
    old = _talked(tenant_a, resolution_kind=ABANDONED)
    Conversation.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=31))

    overview = tenant_overview(tenant=tenant_a)

    assert (overview.conversations, overview.resolved_by_ai, overview.abandoned) == (5, 2, 1)
    assert overview.ai_resolution_rate == pytest.approx(0.4)


def test_conversations_without_a_word_are_not_counted() -> None:
    tenant = factories.TenantFactory()
    _talked(tenant)
    factories.ConversationFactory(tenant=tenant, handoff_reason="customer_request")
    factories.ConversationFactory.create_batch(3, tenant=tenant)  # page views, nothing said

    overview = tenant_overview(tenant=tenant)

    assert (overview.conversations, overview.handed_off) == (2, 1)
