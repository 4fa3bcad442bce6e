"""Database work from async code on the hot path.

``database_sync_to_async`` defaults to one shared thread per process ("thread sensitive"), so
every socket's queries wait in a single line. The answer path's queries are independent,
self-contained transactions, so they may run on the worker pool side by side, each thread with
its own (persistent) connection.
"""

from collections.abc import Callable
from typing import Any

from channels.db import database_sync_to_async


def db_parallel(func: Callable[..., Any]) -> Any:
    return database_sync_to_async(func, thread_sensitive=False)
