"""The console overview's counts."""

import pytest

from analytics.selectors import tenant_overview
from tests import factories

pytestmark = pytest.mark.django_db


def test_conversations_without_a_word_are_not_counted() -> None:
    tenant = factories.TenantFactory()
    talked = factories.ConversationFactory(tenant=tenant)
    factories.MessageFactory(conversation=talked, tenant=tenant, role="customer", content="Hi")
    factories.ConversationFactory(tenant=tenant, handoff_reason="customer_request")
    factories.ConversationFactory.create_batch(3, tenant=tenant)  # page views, nothing said

    overview = tenant_overview(tenant=tenant)

    assert (overview.conversations, overview.handed_off) == (2, 1)
