"""The console overview's figures."""

from datetime import timedelta

import pytest
from django.utils import timezone

from analytics.selectors import tenant_overview
from conversations.models import Conversation
from tests import factories

pytestmark = pytest.mark.django_db

AI = Conversation.ResolutionKind.AI
ABANDONED = Conversation.ResolutionKind.ABANDONED


def test_the_overview_counts_ai_resolutions_and_abandoned_conversations(tenant_a, tenant_b) -> None:
    for kind in (AI, AI, ABANDONED, Conversation.ResolutionKind.AGENT, ""):
        factories.ConversationFactory(tenant=tenant_a, resolution_kind=kind)
    factories.ConversationFactory(tenant=tenant_b, resolution_kind=AI)
    factories.ConversationFactory(tenant=tenant_b, resolution_kind=ABANDONED)
    old = factories.ConversationFactory(tenant=tenant_a, resolution_kind=ABANDONED)
    Conversation.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=31))

    overview = tenant_overview(tenant=tenant_a)

    assert (overview.conversations, overview.resolved_by_ai, overview.abandoned) == (5, 2, 1)
    assert overview.ai_resolution_rate == pytest.approx(0.4)
