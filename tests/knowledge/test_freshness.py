"""An edit is searchable by the very next question, in this process and in every other one.

These tests run with the production values of the freshness settings (a version check at most
once a second, rebuilds in a background thread): the test settings check on every lookup and
rebuild in the caller, which would hide a stale index.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from channels.db import database_sync_to_async
from django.core.cache import cache
from django.db import connection
from django.test import override_settings

from knowledge.freshness import channel_name
from knowledge.models import KnowledgeEntry
from knowledge.search import IndexRegistry, faq_match, registry
from knowledge.services import knowledge_entry_save, knowledge_version_cache_key
from tests.support import factories
from tests.support.widget import ORIGIN, Widget, text_of

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "Can I pay with a gift card?"

PRODUCTION_FRESHNESS = override_settings(
    KNOWLEDGE_INDEX_CHECK_SECONDS=1.0, KNOWLEDGE_INDEX_BACKGROUND_REBUILD=True
)


pytestmark = pytest.mark.usefixtures("fresh_registry")


@pytest.fixture
def tenant(transactional_db):
    tenant = factories.TenantFactory()
    # Test databases reuse ids: a version cached by an earlier test must not count.
    cache.delete(knowledge_version_cache_key(tenant.pk))
    factories.KnowledgeEntryFactory(
        tenant=tenant, question="How do I change my address?", answer="Under My Account."
    )
    return tenant


def _entry_ids(index) -> set[int]:
    return {entry.id for entry in index.entries}


@PRODUCTION_FRESHNESS
def test_a_saved_entry_answers_the_next_question_here_and_in_another_registry(tenant) -> None:
    other_process = IndexRegistry()
    assert registry.get(tenant.pk) is not None
    old = other_process.get(tenant.pk)
    assert old is not None

    entry = knowledge_entry_save(
        entry=KnowledgeEntry(tenant=tenant, question=QUESTION, answer="Yes, at checkout.")
    )

    match = faq_match(tenant=tenant, query=QUESTION)
    assert match is not None and match.entry_id == entry.pk and match.answers_directly
    fresh = other_process.get(tenant.pk)
    assert fresh is not None and entry.pk in _entry_ids(fresh)


@PRODUCTION_FRESHNESS
async def test_the_event_loop_lookup_waits_for_the_new_index(tenant) -> None:
    assert await registry.aget(tenant.pk) is not None
    entry = await database_sync_to_async(knowledge_entry_save)(
        entry=KnowledgeEntry(tenant=tenant, question=QUESTION, answer="Yes, at checkout.")
    )
    index = await registry.aget(tenant.pk)
    assert index is not None and entry.pk in _entry_ids(index)


@PRODUCTION_FRESHNESS
async def test_the_widget_answers_the_first_question_after_an_edit_from_it(tenant) -> None:
    await database_sync_to_async(_allow_widget)(tenant)
    widget = Widget(tenant)
    try:
        await widget.open()
        before = await widget.ask("How do I change my address?", "m1")
        assert text_of(before) == "Under My Account."  # the index is built and checked now
        await database_sync_to_async(knowledge_entry_save)(
            entry=KnowledgeEntry(tenant=tenant, question=QUESTION, answer="Yes, at checkout.")
        )
        frames = await widget.ask(QUESTION, "m2")
    finally:
        await widget.close()
    assert frames[-1]["source"] == "faq"
    assert text_of(frames) == "Yes, at checkout."


def _allow_widget(tenant) -> None:
    tenant.allowed_origins = [ORIGIN]
    tenant.default_language = "en"
    tenant.save(update_fields=["allowed_origins", "default_language"])


_EDIT_IN_ANOTHER_PROCESS = """
import django
django.setup()
from knowledge.models import KnowledgeEntry
from knowledge.services import knowledge_entry_save
from tenants.models import Tenant
entry = knowledge_entry_save(
    entry=KnowledgeEntry(tenant=Tenant.objects.get(pk={tenant_id}), question={question!r},
                         answer="Yes, at checkout.")
)
print(entry.pk)
"""


@pytest.mark.usefixtures("postgres")
@override_settings(KNOWLEDGE_INDEX_CHECK_SECONDS=60.0, KNOWLEDGE_INDEX_BACKGROUND_REBUILD=True)
def test_an_edit_in_another_process_reaches_this_one_at_once(tenant, redis_url: str) -> None:
    """The periodic check is an hour away: only the change announcement can tell."""
    assert registry.get(tenant.pk) is not None  # builds the index, subscribes to changes
    probe = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + 10
    while not probe.pubsub_numsub(channel_name(redis_url))[0][1]:
        assert time.monotonic() < deadline, "the change subscriber never subscribed"
        time.sleep(0.02)

    database = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "helpdesk_site.settings.test",
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}"
        f"/{database['NAME']}",
        "REDIS_URL": redis_url,
    }
    result = subprocess.run(  # noqa: S603
        [
            sys.executable,
            "-c",
            _EDIT_IN_ANOTHER_PROCESS.format(tenant_id=tenant.pk, question=QUESTION),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    entry_id = int(result.stdout.strip().splitlines()[-1])

    match = faq_match(tenant=tenant, query=QUESTION)
    assert match is not None and match.entry_id == entry_id
