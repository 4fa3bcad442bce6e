"""Fail-closed tenant scoping: a query of a tenant-owned model needs an active tenant scope.

Every tenant-owned model's default manager (``TenantScopedManager``) filters by the tenant of
the active scope, and a query made with no tenant in scope raises ``ScopeError`` instead of
returning every tenant's rows. The scope is a context variable (django-scopes' state), so it
follows a request, a socket's task and the threads of ``sync_to_async``, and it is entered once
per entry point:

- ``scope_entry()`` / ``scope_entry_enter()``: an entry point (a request, a socket, a task, a
  command) starts enforced and with no tenant, whatever the context it inherited: a context
  variable is copied into asyncio tasks and ``sync_to_async`` threads, and no entry point may
  inherit an outer "disabled" state;
- ``tenant_scope(tenant_id)`` / ``enter_tenant_scope(tenant_id)``: the tenant the entry point
  works for, for a block or for the rest of the current context (a socket, once it knows its
  tenant);
- ``all_tenants(reason)``: code that crosses tenants on purpose (superusers' pages, sweeps over
  every tenant, the group-commit writer) says so, with a one-line reason.

A queryset made inside a scope keeps that scope's filter when it is evaluated later. Forward
relations (``message.conversation``), saves and cascading deletes go through Django's base
manager, which is not scoped: they follow a row already read in scope.
"""

import functools
import inspect
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from django.db import models
from django_scopes import ScopeError, get_scope
from django_scopes.manager import DisabledQuerySet
from django_scopes.state import state

__all__ = [
    "ScopeError",
    "TenantOrGlobalScopedManager",
    "TenantScopedManager",
    "all_tenants",
    "enter_all_tenants",
    "enter_tenant_scope",
    "scope_entry",
    "scope_entry_enter",
    "scoped_tenant_id",
    "tenant_or_all_tenants",
    "tenant_scope",
    "tenant_scoped_task",
]

logger = logging.getLogger(__name__)

TENANT = "tenant"
_ENABLED = "_enabled"

P = ParamSpec("P")
R = TypeVar("R")


def _tenant_id(tenant_id: Any) -> int:
    # A None or a model here would silently mean "no filter" or a wrong one: refuse both.
    if isinstance(tenant_id, bool) or not isinstance(tenant_id, int):
        raise TypeError(f"a tenant scope takes a tenant id, not {tenant_id!r}")
    return tenant_id


@contextmanager
def _state(value: dict[str, Any]) -> Iterator[None]:
    previous = state.get()
    state.set(value)
    try:
        yield
    finally:
        state.set(previous)


def scope_entry() -> Any:
    """An entry point's block: enforced, no tenant, whatever the caller's scope was."""
    return _state({_ENABLED: True})


def scope_entry_enter() -> None:
    """``scope_entry`` for the rest of the current context (a socket's task)."""
    state.set({_ENABLED: True})


def tenant_scope(tenant_id: int) -> Any:
    """Queries in the block see the tenant's rows only."""
    return _state({_ENABLED: True, TENANT: _tenant_id(tenant_id)})


def enter_tenant_scope(tenant_id: int) -> None:
    """``tenant_scope`` for the rest of the current context: a socket once it knows its
    tenant, an API request once its key is authenticated."""
    state.set({_ENABLED: True, TENANT: _tenant_id(tenant_id)})


def all_tenants(reason: str) -> Any:
    """Queries in the block see every tenant's rows. ``reason`` says why, in one line."""
    logger.debug("tenant scope disabled: %s", reason)
    return _state({_ENABLED: False})


def enter_all_tenants(reason: str) -> None:
    """``all_tenants`` for the rest of the current context (a superuser's request, a command
    that works on every tenant)."""
    logger.debug("tenant scope disabled: %s", reason)
    state.set({_ENABLED: False})


def tenant_or_all_tenants(tenant_id: int | None, reason: str) -> Any:
    """``tenant_scope(tenant_id)``, or ``all_tenants(reason)`` when ``tenant_id`` is None: for
    work that covers one tenant or every tenant (a sweep, a change notice)."""
    return all_tenants(reason) if tenant_id is None else tenant_scope(tenant_id)


def scoped_tenant_id() -> int | None:
    """The tenant of the active scope, or None (no tenant, or scoping disabled)."""
    current = get_scope()
    return current.get(TENANT) if current.get(_ENABLED, True) else None


def tenant_scoped_task(func: Callable[P, R]) -> Callable[P, R]:
    """A Celery task (or any entry point) that runs in the scope of its ``tenant_id``
    argument, whatever scope its caller had."""
    signature = inspect.signature(func)
    if "tenant_id" not in signature.parameters:
        raise TypeError(f"{func.__qualname__} takes no tenant_id")

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        tenant_id = signature.bind(*args, **kwargs).arguments["tenant_id"]
        with tenant_scope(tenant_id):
            return func(*args, **kwargs)

    return wrapper


class UnscopedQuerySet(DisabledQuerySet):
    """What a scoped manager gives with no tenant in scope: anything that would read or change
    rows raises ``ScopeError``. Creating rows (with their tenant) is allowed. django-scopes'
    list leaves a few methods that still reach the database (``exists`` on a clone, say): they
    raise here too."""

    exists = DisabledQuerySet.error
    contains = DisabledQuerySet.error
    in_bulk = DisabledQuerySet.error
    explain = DisabledQuerySet.error
    exclude = DisabledQuerySet.error
    select_related = DisabledQuerySet.error
    prefetch_related = DisabledQuerySet.error
    distinct = DisabledQuerySet.error
    defer = DisabledQuerySet.error
    alias = DisabledQuerySet.error
    extra = DisabledQuerySet.error
    bulk_update = DisabledQuerySet.error
    _fetch_all = DisabledQuerySet.error

    def __repr__(self) -> str:
        # The stock repr reads rows: a log line or a debugger must not raise.
        return f"<{type(self).__name__} of {self.model.__name__}: no tenant in scope>"


class TenantScopedManager(models.Manager):
    """The default manager of tenant-owned models: the active tenant's rows, all rows where
    scoping is disabled on purpose, and ``ScopeError`` with no tenant in scope."""

    def tenant_filter(self, tenant_id: int) -> models.Q:
        return models.Q(tenant_id=tenant_id)

    def get_queryset(self) -> models.QuerySet:
        current = get_scope()
        if not current.get(_ENABLED, True):
            return super().get_queryset()
        tenant_id = current.get(TENANT)
        if tenant_id is None:
            return UnscopedQuerySet(self.model, using=self._db, missing_scopes={TENANT})
        return super().get_queryset().filter(self.tenant_filter(tenant_id))

    def all(self) -> models.QuerySet:
        # Raises at once with no tenant in scope, rather than when the result is first used.
        queryset = self.get_queryset()
        return queryset.all() if isinstance(queryset, UnscopedQuerySet) else queryset


class TenantOrGlobalScopedManager(TenantScopedManager):
    """For rows whose tenant may be empty (global rows): a tenant sees its own and the global
    ones."""

    def tenant_filter(self, tenant_id: int) -> models.Q:
        return models.Q(tenant_id=tenant_id) | models.Q(tenant__isnull=True)
