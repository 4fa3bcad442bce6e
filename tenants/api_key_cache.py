"""Live API keys remembered by each process, so that an API request needs no database read to
learn its key and tenant.

Revocation stays immediate. Every change to an API key or a tenant (saved or deleted: a key
revoked or issued, a tenant deactivated or its settings edited) moves "the keys version" on: at
once in the process that made it, and after commit in the shared cache (Redis with
``REDIS_URL``) for every other process, which reads the version at most once every
``VERSION_CHECK_SECONDS``, so it refuses a revoked key within that time. A remembered key is
used only while the version it was read under is current, and for ``ENTRY_MAX_SECONDS`` at most
(a change made behind the models' back, such as a raw ``UPDATE``, is seen then). A process that
cannot read the shared version trusts nothing it remembers and reads the database.

The changes are caught with model signals rather than in each service, so that a key revoked in
the admin or a tenant deactivated by any form is never missed. Entries are found by the key's
digest; the raw key is never kept. Without Redis, the one process's own version is the truth
(the local-memory cache holds the shared version, which only this process moves).
"""

import copy
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db import transaction
from redis.exceptions import RedisError

from tenants.models import ApiKey

logger = logging.getLogger(__name__)

VERSION_KEY = "tenants:api-keys:version"
# How stale another process's view of revocations may be.
VERSION_CHECK_SECONDS = 1.0
ENTRY_MAX_SECONDS = 60.0
MAX_ENTRIES = 10_000

# (this process's version, the shared version)
Version = tuple[int, int]


@dataclass
class _Entry:
    api_key: ApiKey
    version: Version
    stored_at: float


class ApiKeyCache:
    """Live keys by digest, valid while the keys version they were read under is current.

    Read the version (``version``) before reading the database, and store what was read under
    it (``put``): a change committed in between has moved the version on, so the entry is never
    used. Thread-safe; ``get`` hands out copies (a request may change its key or tenant)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._local = 0
        self._shared: int | None = None
        self._shared_read_at: float | None = None

    def version(self) -> Version | None:
        """The current keys version; None when the shared one cannot be read (trust nothing)."""
        now = self._clock()
        with self._lock:
            read_at = self._shared_read_at
            fresh = read_at is not None and now - read_at < VERSION_CHECK_SECONDS
            if fresh and self._shared is not None:
                return (self._local, self._shared)
            local = self._local
        try:
            shared = int(cache.get(VERSION_KEY, 0))
        except (RedisError, OSError, TypeError, ValueError):
            logger.warning("API keys version unreadable: keys are read from the database")
            with self._lock:
                self._shared_read_at = None
            return None
        with self._lock:
            if shared != self._shared:
                self._entries.clear()
            self._shared, self._shared_read_at = shared, now
            if local != self._local:  # changed here meanwhile: read under the newer version
                return None
            return (local, shared)

    def get(self, digest: str) -> ApiKey | None:
        """A copy of the live key with this digest, if remembered and still valid."""
        version = self.version()
        if version is None:
            return None
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            if entry.version != version or self._clock() - entry.stored_at >= ENTRY_MAX_SECONDS:
                del self._entries[digest]
                return None
            return _copy(entry.api_key)

    def put(self, digest: str, api_key: ApiKey, version: Version | None) -> None:
        """Remembers ``api_key`` (with its tenant), read from the database under ``version``."""
        if version is None:
            return
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[digest] = _Entry(_copy(api_key), version, self._clock())

    def touched(self, digest: str, api_key: ApiKey) -> None:
        """``api_key.last_used_at`` was recorded: the remembered key has it too."""
        with self._lock:
            entry = self._entries.get(digest)
            if entry is not None and entry.api_key.pk == api_key.pk:
                entry.api_key.last_used_at = api_key.last_used_at

    def forget(self) -> None:
        """A key or tenant changed in this process: nothing remembered is valid any more."""
        with self._lock:
            self._local += 1
            self._entries.clear()

    def reset(self) -> None:
        """Forgets everything, the shared version read and when too. For tests: one that puts
        the cache on a clock of its own must not inherit a read time from the real one."""
        with self._lock:
            self._local += 1
            self._entries.clear()
            self._shared = self._shared_read_at = None


def _copy(api_key: ApiKey) -> ApiKey:
    copied = copy.copy(api_key)  # with a copy of its related-object cache
    if ApiKey.tenant.is_cached(api_key):
        copied.tenant = copy.copy(api_key.tenant)
    return copied


api_key_cache = ApiKeyCache()


def api_keys_version_bump() -> None:
    """Tells every process that keys or tenants changed (this one at once)."""
    api_key_cache.forget()
    try:
        cache.add(VERSION_KEY, 0, timeout=None)
        cache.incr(VERSION_KEY)
    except (RedisError, OSError, ValueError):
        # ValueError: the key expired between add and incr. The other processes see the
        # change when their entries expire (ENTRY_MAX_SECONDS), or at once while they cannot
        # read the version either.
        logger.warning("API keys version not announced", exc_info=True)


def api_keys_changed(**kwargs: Any) -> None:
    """A key or a tenant was saved or deleted (a model signal's receiver)."""
    # At once, for this process's next request (even inside a transaction, as in tests), and
    # after commit, for everybody: a read made in between may have seen the old row.
    api_key_cache.forget()
    transaction.on_commit(api_keys_version_bump)
