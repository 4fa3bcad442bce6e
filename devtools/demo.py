"""The demo workspace: "Acme Shop" with its FAQ, moderation list and two logins."""

import importlib
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import transaction

from analytics.rollups import local_today
from analytics.seed import SeedResult, analytics_seed, seeded_history_exists
from knowledge.models import KnowledgeEntry, SensitiveWordList
from tenants.models import Language, Membership, Role, Tenant
from tenants.scoping import tenant_scope

DEMO_DATA = Path(__file__).resolve().parent / "demo_data.json"
DEMO_SLUG = "acme"
# Six weeks of generated history, so that every dashboard, the topics and the gaps are full.
DEMO_HISTORY_CONVERSATIONS = 1_500
DEMO_HISTORY_DAYS = 42
DEMO_HISTORY_SEED = 2026
# Jobs of the analytics app that read the history: called when the app has them.
INSIGHT_JOBS = (("analytics.topics", "topics_refresh"), ("analytics.gaps", "gaps_refresh"))
INSIGHT_DAYS = 7

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    role: Role


DEMO_LOGINS = (
    DemoLogin("acme-admin", "acme-admin-demo", Role.OWNER),
    DemoLogin("acme-agent", "acme-agent-demo", Role.AGENT),
)

PERSONA = (
    "You are the customer-service assistant of Acme Shop, an online shop for electronics and "
    "home goods. Answer politely and briefly in the customer's language, only from the shop's "
    "knowledge. If you are not sure, say so and offer to connect the customer with a person."
)


@dataclass(frozen=True)
class DemoSummary:
    tenant: Tenant
    faq_created: int
    faq_total: int
    logins: tuple[DemoLogin, ...]


@transaction.atomic
def demo_tenant_setup(*, origins: list[str]) -> DemoSummary:
    """Creates or refreshes the demo tenant. Safe to run again: nothing is duplicated."""
    data = json.loads(DEMO_DATA.read_text(encoding="utf-8"))
    tenant, _created = Tenant.objects.get_or_create(
        slug=DEMO_SLUG,
        defaults={
            "name": "Acme Shop",
            "persona": PERSONA,
            "default_language": Language.CHINESE,
            "widget_greeting": "您好！我是 Acme 智能客服 · Hi! How can I help?",
        },
    )
    missing_origins = [origin for origin in origins if origin not in tenant.allowed_origins]
    if missing_origins:
        tenant.allowed_origins = [*tenant.allowed_origins, *missing_origins]
        tenant.save(update_fields=["allowed_origins", "updated_at"])
    with tenant_scope(tenant.pk):
        return _demo_content_setup(tenant=tenant, data=data)


def _demo_content_setup(*, tenant: Tenant, data: dict) -> DemoSummary:
    existing = set(KnowledgeEntry.objects.filter(tenant=tenant).values_list("question", flat=True))
    new_entries = [
        KnowledgeEntry(
            tenant=tenant,
            question=item["question"],
            alternate_questions=item.get("alternate_questions", []),
            answer=item["answer"],
            tags=item.get("tags", []),
        )
        for item in data["faq"]
        if item["question"] not in existing
    ]
    KnowledgeEntry.objects.bulk_create(new_entries)

    for action, words in data["sensitive_words"].items():
        SensitiveWordList.objects.update_or_create(
            tenant=tenant,
            name=f"Acme {action}",
            defaults={"action": action, "words": "\n".join(words)},
        )

    user_model = get_user_model()
    for login in DEMO_LOGINS:
        user = user_model.objects.filter(username=login.username).first()
        if user is None:
            user = user_model.objects.create_user(
                username=login.username,
                password=login.password,
                email=f"{login.username}@example.com",
            )
        Membership.objects.update_or_create(user=user, tenant=tenant, defaults={"role": login.role})
    return DemoSummary(
        tenant=tenant,
        faq_created=len(new_entries),
        faq_total=KnowledgeEntry.objects.filter(tenant=tenant).count(),
        logins=DEMO_LOGINS,
    )


def demo_history_ensure(*, tenant: Tenant) -> SeedResult | None:
    """Generates the demo tenant's weeks of history (``analytics.seed``) unless an earlier run
    did, then refreshes its hot topics and knowledge gaps. Returns what was generated, or None
    when the history was there already (running the demo again never doubles it)."""
    if seeded_history_exists(tenant=tenant):
        return None
    result = analytics_seed(
        tenant=tenant,
        conversations=DEMO_HISTORY_CONVERSATIONS,
        days=DEMO_HISTORY_DAYS,
        seed=DEMO_HISTORY_SEED,
    )
    until = local_today(tenant)
    since = until - timedelta(days=INSIGHT_DAYS - 1)
    for module_name, function_name in INSIGHT_JOBS:
        try:
            job = getattr(importlib.import_module(module_name), function_name)
        except (ImportError, AttributeError):
            logger.debug("demo: %s.%s is not available", module_name, function_name)
            continue
        job(tenant=tenant, since=since, until=until)
    return result
