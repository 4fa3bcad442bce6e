"""Background work on reports. Idempotent: a task run twice writes the same rollups."""

import logging
from datetime import date

from celery import shared_task

from analytics.gaps import gaps_refresh
from analytics.rollups import rollups_refresh
from analytics.topics import default_period, topics_refresh
from tenants.models import Tenant
from tenants.scoping import tenant_scoped_task
from tenants.tasks import SCHEDULED_TASK_OPTIONS

logger = logging.getLogger(__name__)


@shared_task(**SCHEDULED_TASK_OPTIONS)
def analytics_rollup_task() -> dict[str, int]:
    """Rebuilds every active tenant's rollups of yesterday and today (their local days) and
    purges hourly rollups past ``ANALYTICS_HOURLY_DAYS``; run every
    ``ANALYTICS_ROLLUP_SECONDS`` by Celery beat."""
    written = rollups_refresh()
    logger.info("analytics rollups rebuilt for %s tenants", len(written))
    return dict(written)


@shared_task(**{**SCHEDULED_TASK_OPTIONS, "soft_time_limit": 900, "time_limit": 960})
@tenant_scoped_task
def analytics_topics_tenant_task(tenant_id: int, since: str, until: str) -> dict[str, int]:
    """Hot topics and knowledge gaps of one tenant's ``since``–``until`` (ISO local days)."""
    tenant = Tenant.objects.get(pk=tenant_id)
    topics = topics_refresh(
        tenant=tenant, since=date.fromisoformat(since), until=date.fromisoformat(until)
    )
    gaps = gaps_refresh(
        tenant=tenant, since=date.fromisoformat(since), until=date.fromisoformat(until)
    )
    return {"topics": topics.topics, "gaps": gaps.gaps}


@shared_task(**SCHEDULED_TASK_OPTIONS)
def analytics_topics_task() -> int:
    """Queues every active tenant's topics and gaps of its last 7 local days; run daily by
    Celery beat (``ANALYTICS_TOPICS_SECONDS``)."""
    queued = 0
    for tenant in Tenant.objects.filter(is_active=True).order_by("pk"):
        since, until = default_period(tenant)
        analytics_topics_tenant_task.delay(tenant.pk, since.isoformat(), until.isoformat())
        queued += 1
    return queued
