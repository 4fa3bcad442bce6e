"""Database work from async code.

Async code (consumers, the answer pipeline) never calls the ORM itself: it awaits the async
twin of a service or selector, defined in the same module as the function it wraps and named
like Django's own (``aget`` for ``get``): ``aconversation_accept`` for ``conversation_accept``,
made with ``async_twin``.

``database_sync_to_async`` defaults to one shared thread per process ("thread sensitive"), so
every socket's queries wait in a single line. The answer path's queries are independent,
self-contained transactions, so they may run on the worker pool side by side, each thread with
its own (persistent) connection: their twins are made with ``parallel=True`` (``db_parallel``).
"""

from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from channels.db import database_sync_to_async
from django.db import connections

P = ParamSpec("P")
R = TypeVar("R")


def db_parallel(func: Callable[..., Any]) -> Any:
    return database_sync_to_async(func, thread_sensitive=False)


def async_twin(
    func: Callable[P, R], *, parallel: bool = False
) -> Callable[P, Coroutine[Any, Any, R]]:
    """``func`` for async callers: run in ``database_sync_to_async``, on the process's shared
    database thread, or with ``parallel`` on the worker pool (a self-contained transaction on
    the hot path)."""
    twin: Callable[P, Coroutine[Any, Any, R]] = database_sync_to_async(
        func, thread_sensitive=not parallel
    )
    return twin


def request_connections_close(**kwargs: Any) -> None:
    """Closes the request's database connections when it finishes (``request_finished``).

    Under ASGI a sync view runs in a thread of the request's own (asgiref's
    ``ThreadSensitiveContext``), so a connection it opened can never serve another request; yet
    ``CONN_MAX_AGE`` would keep it open after the thread is gone, and under load PostgreSQL runs
    out of connections. Connections inside a transaction are left alone (tests wrap requests in
    one). Async views and sockets reach the database through ``database_sync_to_async``, whose
    threads keep theirs."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()
