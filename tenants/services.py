"""Writes for tenants, memberships and API keys."""

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from tenants.api_key_cache import api_key_cache
from tenants.models import ApiKey, IdempotencyRecord, Membership, Role, Tenant
from tenants.scoping import all_tenants, tenant_scope

API_KEY_PREFIX = "kefu_"
# last_used_at is informative; writing it on every request would make every API call a write.
API_KEY_TOUCH_INTERVAL = timedelta(minutes=1)


@dataclass(frozen=True)
class IssuedApiKey:
    api_key: ApiKey
    raw_key: str  # shown to the user once, never stored


def api_key_digest(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_issue(
    *, tenant: Tenant, name: str, scopes: list[str], created_by: User | None = None
) -> IssuedApiKey:
    unknown = set(scopes) - set(ApiKey.Scope.values)
    if unknown:
        raise ValidationError(
            _("Unknown scopes: %(scopes)s") % {"scopes": ", ".join(sorted(unknown))}
        )
    prefix = secrets.token_hex(4)
    raw_key = f"{API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    api_key = ApiKey.objects.create(
        tenant=tenant,
        name=name,
        prefix=prefix,
        key_hash=api_key_digest(raw_key),
        scopes=sorted(set(scopes)),
        created_by=created_by,
    )
    return IssuedApiKey(api_key=api_key, raw_key=raw_key)


def api_key_authenticate(*, raw_key: str) -> ApiKey | None:
    """The live key matching ``raw_key``, its use recorded; None for unknown or revoked keys.

    Live keys are remembered by the process (``tenants.api_key_cache``): a revocation is seen at
    once here and within a second in every other process."""
    if not raw_key.startswith(API_KEY_PREFIX):
        return None
    digest = api_key_digest(raw_key)
    api_key = api_key_cache.get(digest)
    if api_key is None:
        version = api_key_cache.version()  # before the read: a change after it is noticed
        with all_tenants("an API key names its tenant: the lookup precedes any scope"):
            api_key = (
                ApiKey.objects.select_related("tenant")
                .filter(key_hash=digest, revoked_at__isnull=True, tenant__is_active=True)
                .first()
            )
        if api_key is None:
            return None
        api_key_cache.put(digest, api_key, version)
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > API_KEY_TOUCH_INTERVAL:
        with tenant_scope(api_key.tenant_id):
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
        api_key_cache.touched(digest, api_key)
    return api_key


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at", "updated_at"])
    return api_key


@transaction.atomic
def membership_create_with_user(
    *, tenant: Tenant, username: str, email: str, password: str, role: Role
) -> Membership:
    """Creates a login and makes it a member of the tenant."""
    user_model = get_user_model()
    if user_model.objects.filter(username__iexact=username).exists():
        raise ValidationError({"username": _("This username is taken.")})
    user = user_model.objects.create_user(username=username, email=email, password=password)
    return Membership.objects.create(user=user, tenant=tenant, role=role)


class IdempotencyOutcome(enum.Enum):
    NEW = "new"  # the request goes ahead; its response is recorded with idempotency_record
    REPLAY = "replay"  # answered before: send the recorded response
    IN_PROGRESS = "in_progress"  # the first request with this key is still running
    MISMATCH = "mismatch"  # the key was used for another request


@dataclass(frozen=True)
class IdempotencyClaim:
    outcome: IdempotencyOutcome
    record_id: int | None = None
    status_code: int | None = None
    body: Any = None


def idempotency_claim(*, api_key: ApiKey, key: str, fingerprint: str) -> IdempotencyClaim:
    """Claims ``key`` for a POST of ``api_key``'s, or says what the first request with it got.
    A record older than ``API_IDEMPOTENCY_TTL_SECONDS`` is forgotten, and so is a claim whose
    request never answered within ``API_IDEMPOTENCY_CLAIM_TIMEOUT_SECONDS`` (its process died):
    otherwise the key would answer "in progress" until the record expired."""
    now = timezone.now()
    expired_before = now - timedelta(seconds=settings.API_IDEMPOTENCY_TTL_SECONDS)
    abandoned_before = now - timedelta(seconds=settings.API_IDEMPOTENCY_CLAIM_TIMEOUT_SECONDS)
    with tenant_scope(api_key.tenant_id):
        IdempotencyRecord.objects.filter(api_key=api_key, key=key).filter(
            Q(created_at__lt=expired_before)
            | Q(status_code__isnull=True, created_at__lt=abandoned_before)
        ).delete()
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    tenant_id=api_key.tenant_id, api_key=api_key, key=key, fingerprint=fingerprint
                )
        except IntegrityError:
            found = IdempotencyRecord.objects.filter(api_key=api_key, key=key).first()
            if found is None:  # expired and deleted by a concurrent claim meanwhile
                return IdempotencyClaim(IdempotencyOutcome.IN_PROGRESS)
            if found.fingerprint != fingerprint:
                return IdempotencyClaim(IdempotencyOutcome.MISMATCH)
            if found.status_code is None:
                return IdempotencyClaim(IdempotencyOutcome.IN_PROGRESS)
            return IdempotencyClaim(
                IdempotencyOutcome.REPLAY, found.pk, found.status_code, found.body
            )
    return IdempotencyClaim(IdempotencyOutcome.NEW, record.pk)


def idempotency_record(*, tenant_id: int, record_id: int, status_code: int, body: Any) -> None:
    """Records the response to the request that claimed ``record_id``."""
    with tenant_scope(tenant_id):
        IdempotencyRecord.objects.filter(pk=record_id).update(status_code=status_code, body=body)


def idempotency_release(*, tenant_id: int, record_id: int) -> None:
    """Forgets a claim whose request failed on the server's side: a retry runs it again."""
    with tenant_scope(tenant_id):
        IdempotencyRecord.objects.filter(pk=record_id).delete()


def idempotency_purge() -> int:
    """Deletes every record past its time to live; returns how many."""
    expired_before = timezone.now() - timedelta(seconds=settings.API_IDEMPOTENCY_TTL_SECONDS)
    with all_tenants("purging expired idempotency records"):
        deleted, _counts = IdempotencyRecord.objects.filter(created_at__lt=expired_before).delete()
    return deleted
