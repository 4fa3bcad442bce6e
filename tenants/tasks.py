import logging
from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError

from tenants.services import idempotency_purge

logger = logging.getLogger(__name__)


# Periodic housekeeping run by Celery beat: retried on database errors with backoff, never left
# running. Shared by the scheduled tasks of every app.
SCHEDULED_TASK_OPTIONS: dict[str, Any] = {
    "acks_late": True,
    "autoretry_for": (OperationalError, InterfaceError),
    "max_retries": 3,
    "retry_backoff": 10,
    "retry_jitter": True,
    "soft_time_limit": 240,
    "time_limit": 300,
}


@shared_task(**SCHEDULED_TASK_OPTIONS)
def idempotency_purge_task() -> int:
    """Deletes the idempotency records past ``API_IDEMPOTENCY_TTL_SECONDS``; run hourly by
    Celery beat. Idempotent: a second run finds nothing left to delete."""
    deleted = idempotency_purge()
    logger.info("idempotency records purged: %s", deleted)
    return deleted
