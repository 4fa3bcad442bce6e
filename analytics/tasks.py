"""Background work on reports. Idempotent: a task run twice writes the same rollups."""

import logging

from celery import shared_task

from analytics.rollups import rollups_refresh
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
