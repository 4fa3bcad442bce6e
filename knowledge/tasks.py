"""Background work on the knowledge base. Tasks take ids and are safe to run more than once."""

import logging
from concurrent.futures import ThreadPoolExecutor

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError, connections
from django.utils.translation import gettext_lazy as _

from knowledge import services
from knowledge.models import Document
from llm.gateway import GatewayError
from tenants.scoping import tenant_scoped_task

logger = logging.getLogger(__name__)

# Worth another try: the database was unreachable or locked for a moment. Anything else about a
# document (a damaged file, say) fails the same way every time.
RETRYABLE_ERRORS = (OperationalError, InterfaceError)


@shared_task(
    acks_late=True,
    autoretry_for=RETRYABLE_ERRORS,
    max_retries=5,
    retry_backoff=10,
    retry_backoff_max=600,
    retry_jitter=True,
    # A 20 MB PDF takes minutes, not the default five.
    soft_time_limit=540,
    time_limit=600,
)
@tenant_scoped_task
def document_process_task(document_id: int, tenant_id: int) -> None:
    """Extracts and chunks one document (``services.document_process``)."""
    try:
        services.document_process(document_id=document_id, tenant_id=tenant_id)
    except Document.DoesNotExist:
        # Deleted since it was queued, or the ids do not belong together: nothing to do.
        logger.info("document %s of tenant %s not found; not processed", document_id, tenant_id)
    except RETRYABLE_ERRORS:
        raise
    except SoftTimeLimitExceeded:
        services.document_mark_failed(
            document_id=document_id,
            tenant_id=tenant_id,
            error=_(
                "Processing took too long. Split the document into smaller files and upload "
                "them one by one."
            ),
        )
    except Exception:
        # A bug, or a file that trips a parser in an unforeseen way: the tenant gets a plain
        # message, the traceback goes to the logs, and the document is not left "processing".
        _document_fail_unexpectedly(document_id, tenant_id)


@tenant_scoped_task
def _document_fail_unexpectedly(document_id: int, tenant_id: int) -> None:
    logger.exception("processing document %s of tenant %s failed", document_id, tenant_id)
    services.document_mark_failed(
        document_id=document_id,
        tenant_id=tenant_id,
        error=_("Processing failed unexpectedly. Try again; if it fails again, contact us."),
    )


# With Celery eager there is no worker: large documents are processed here, one at a time, so
# that the request that saved one returns at once and other work keeps its share of the CPU.
_inline_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kb-documents")


def document_process_enqueue(*, document_id: int, tenant_id: int, source_bytes: int) -> None:
    """Queues a document's processing: for a Celery worker, or, when Celery runs tasks eagerly
    (the embedded defaults), in this process's document thread unless the source is small."""
    eager = settings.CELERY_TASK_ALWAYS_EAGER
    if not eager or source_bytes <= settings.KNOWLEDGE_DOCUMENT_INLINE_MAX_BYTES:
        document_process_task.delay(document_id, tenant_id)
        return
    _inline_worker.submit(_document_process_in_thread, document_id, tenant_id)


def _document_process_in_thread(document_id: int, tenant_id: int) -> None:
    try:
        document_process_task(document_id, tenant_id)
    except RETRYABLE_ERRORS:
        # No broker to retry through: the document is failed, and the tenant may retry it.
        _document_fail_unexpectedly(document_id, tenant_id)
    finally:
        connections.close_all()  # this thread's connection, not kept open between documents


@shared_task(
    acks_late=True,
    autoretry_for=(*RETRYABLE_ERRORS, GatewayError),
    max_retries=5,
    retry_backoff=10,
    retry_backoff_max=600,
    retry_jitter=True,
    soft_time_limit=1800,  # a first run over a large knowledge base embeds tens of thousands
    time_limit=1900,
)
@tenant_scoped_task
def knowledge_embed_task(tenant_id: int) -> int:
    """Embeds what a tenant's knowledge lacks (``services.knowledge_embeddings_refresh``)."""
    return services.knowledge_embeddings_refresh(tenant_id=tenant_id)
