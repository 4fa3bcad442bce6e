"""Group commit for the answer path: the messages of many conversations stored in one
transaction.

Every customer message and every answer is stored before the customer hears of it, and each
storage used to be a transaction of its own: at a few hundred messages a second the database
spent its time on commits. The writer keeps one batch in flight per event loop: a write that
arrives while a batch is being stored waits for the next one, which takes everything that
arrived meanwhile. With little traffic a write is stored at once, alone; under load batches
grow by themselves, and so does the number of messages per commit. Nothing is acknowledged
before its batch has committed.

FAQ hit counts (the console's popularity column) are added up in the process and written every
``HITS_FLUSH_SECONDS``, one statement for all entries: the popular entries would otherwise be
the hottest rows of the database, updated with every answer. The answers themselves, with their
``faq-<id>`` references, are stored at once; a process that stops loses at most the last few
seconds of counts, and a count that could not be written is tried again with the next.
"""

import asyncio
import logging
import weakref
from collections import Counter

from django.db import DatabaseError

from conversations.services import MessageWrite, MessageWritten, messages_record
from helpdesk_site.asyncdb import db_parallel
from knowledge.services import knowledge_entries_record_hits
from tenants.scoping import enter_all_tenants

logger = logging.getLogger(__name__)

# A batch holds at most this many writes (a few hundred rows in one INSERT).
BATCH_MAX_WRITES = 200
HITS_FLUSH_SECONDS = 2.0


class _Writer:
    def __init__(self) -> None:
        self.pending: list[tuple[MessageWrite, asyncio.Future[MessageWritten]]] = []
        self.draining: asyncio.Task[None] | None = None
        self.hits: Counter[tuple[int, int]] = Counter()
        self.hits_flush: asyncio.TimerHandle | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def submit(self, write: MessageWrite) -> "asyncio.Future[MessageWritten]":
        future: asyncio.Future[MessageWritten] = asyncio.get_running_loop().create_future()
        self.pending.append((write, future))
        if self.draining is None:
            self.draining = asyncio.create_task(self._drain())
        return future

    async def _drain(self) -> None:
        # A batch holds many tenants' rows, whichever socket's scope started this task.
        enter_all_tenants("a batch stores the messages of many tenants")
        try:
            while self.pending:
                batch = self.pending[:BATCH_MAX_WRITES]
                del self.pending[:BATCH_MAX_WRITES]
                try:
                    results = await db_parallel(messages_record)(writes=[w for w, _ in batch])
                except Exception as exc:  # not one row's fault (the database is unreachable)
                    results = [exc] * len(batch)
                for (write, future), result in zip(batch, results, strict=True):
                    if isinstance(result, MessageWritten):
                        self._count_hit(write, result)
                    if future.done():  # the waiting answer was cancelled (socket closed)
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self.draining = None

    def _count_hit(self, write: MessageWrite, result: MessageWritten) -> None:
        if write.faq_entry_id is not None and result.answer_id is not None:
            self.hits[(write.tenant_id, write.faq_entry_id)] += 1
            self._hits_flush_soon()

    def _hits_flush_soon(self) -> None:
        if self.hits_flush is None:
            self.hits_flush = asyncio.get_running_loop().call_later(
                HITS_FLUSH_SECONDS, self._hits_flush_start
            )

    def _hits_flush_start(self) -> None:
        self.hits_flush = None
        hits, self.hits = self.hits, Counter()
        task = asyncio.get_running_loop().create_task(self._hits_write(hits))
        self.tasks.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self.tasks.discard)

    async def _hits_write(self, hits: Counter[tuple[int, int]]) -> None:
        enter_all_tenants("the hit counts of many tenants' entries are written together")
        try:
            await db_parallel(knowledge_entries_record_hits)(hits=hits)
        except DatabaseError as exc:
            logger.warning("FAQ hit counts not written, retrying later: %s", type(exc).__name__)
            self.hits.update(hits)
            self._hits_flush_soon()


_writers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Writer]" = (
    weakref.WeakKeyDictionary()
)


async def message_write(write: MessageWrite) -> MessageWritten:
    """Stores ``write`` with the next batch and returns once it has committed. Cancelling the
    caller does not cancel the write: what was said is stored."""
    loop = asyncio.get_running_loop()
    writer = _writers.get(loop)
    if writer is None:
        writer = _writers[loop] = _Writer()
    # A cancelled caller cancels only its future: the write stays in its batch.
    return await writer.submit(write)
