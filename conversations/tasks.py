"""Background work on conversations. Tasks take ids and are safe to run more than once."""

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

from conversations.lifecycle import conversations_sweep
from tenants.scoping import tenant_or_all_tenants

logger = logging.getLogger(__name__)


@shared_task(
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    max_retries=3,
    retry_backoff=10,
    retry_jitter=True,
    soft_time_limit=240,
    time_limit=300,
)
def conversations_sweep_task(tenant_id: int | None = None) -> dict[int, dict[str, int]]:
    """Records resolved-by-the-assistant and abandoned conversations (``conversations_sweep``);
    run every ``CONVERSATION_SWEEP_SECONDS`` by Celery beat."""
    with tenant_or_all_tenants(tenant_id, "the scheduled sweep covers every tenant"):
        counts = conversations_sweep(tenant_id=tenant_id)
    for tenant, changed in counts.items():
        logger.info(
            "conversations sweep tenant=%s resolved_by_ai=%s abandoned=%s",
            tenant,
            changed.resolved_by_ai,
            changed.abandoned,
        )
    return {
        tenant: {"resolved_by_ai": changed.resolved_by_ai, "abandoned": changed.abandoned}
        for tenant, changed in counts.items()
    }
