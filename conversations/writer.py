"""Group commit for the answer path: the messages of many conversations stored in one
transaction.

Every customer message and every answer is stored before the customer hears of it, and each
storage used to be a transaction of its own: at a few hundred messages a second the database
spent its time on commits. The writer keeps one batch in flight per event loop: a write that
arrives while a batch is being stored waits for the next one, which takes everything that
arrived meanwhile. With little traffic a write is stored at once, alone; under load batches
grow by themselves, and so does the number of messages per commit. Nothing is acknowledged
before its batch has committed.
"""

import asyncio
import weakref

from conversations.services import MessageWrite, MessageWritten, messages_record
from helpdesk_site.asyncdb import db_parallel

# A batch holds at most this many writes (a few hundred rows in one INSERT).
BATCH_MAX_WRITES = 200


class _Writer:
    def __init__(self) -> None:
        self.pending: list[tuple[MessageWrite, asyncio.Future[MessageWritten]]] = []
        self.draining: asyncio.Task[None] | None = None

    def submit(self, write: MessageWrite) -> "asyncio.Future[MessageWritten]":
        future: asyncio.Future[MessageWritten] = asyncio.get_running_loop().create_future()
        self.pending.append((write, future))
        if self.draining is None:
            self.draining = asyncio.create_task(self._drain())
        return future

    async def _drain(self) -> None:
        try:
            while self.pending:
                batch = self.pending[:BATCH_MAX_WRITES]
                del self.pending[:BATCH_MAX_WRITES]
                try:
                    results = await db_parallel(messages_record)(writes=[w for w, _ in batch])
                except Exception as exc:  # handed to every write of the batch
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():  # the waiting answer was cancelled (socket closed)
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self.draining = None


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
