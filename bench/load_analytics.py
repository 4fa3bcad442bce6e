"""Phase H: analytics at scale, on a PostgreSQL database of its own (``DATABASE_URL``).

- Seeds the demo tenant with ``--conversations`` conversations of generated history
  (``analytics.seed``, ~9 messages each) unless an earlier run did: the figures of the run that
  seeded are kept with the data (the metadata of the customer ``seed-bench-marker``) and
  reported again, marked ``reused``.
- Rebuilds the rollups of yesterday (the busiest full day: traffic rises over the range) and
  times it, with the messages and reporting rows of that day.
- Renders every dashboard page (Django test client, signed in as an owner) ``--requests``
  times for the last 30 and the last 90 days, and the reports API's summary and time series;
  pages whose URL name does not reverse are listed as missing.
- Runs the hot-topics job on ``--topics`` questions when ``analytics.topics`` offers
  ``topics_benchmark``.

Prints one JSON object. ``python bench/load_analytics.py --conversations N [--requests 20]``
"""

import argparse
import importlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "helpdesk_site.settings.base")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import NoReverseMatch, reverse  # noqa: E402

from analytics.models import ReportRow  # noqa: E402
from analytics.rollups import (  # noqa: E402
    local_day_bounds,
    local_today,
    rollups_rebuild,
    tenant_zone,
)
from analytics.seed import SEED_PREFIX, analytics_seed  # noqa: E402
from conversations.models import Conversation, Customer, Message  # noqa: E402
from devtools.demo import DEMO_LOGINS, demo_tenant_setup  # noqa: E402
from tenants.models import Role, Tenant  # noqa: E402
from tenants.scoping import scope_entry, tenant_scope  # noqa: E402
from tenants.services import api_key_issue  # noqa: E402

PAGES = (
    "admin:analytics_overview",
    "admin:analytics_ai",
    "admin:analytics_people",
    "admin:analytics_satisfaction",
    "admin:analytics_cost",
    "admin:analytics_topics",
    "admin:analytics_gaps",
)
API = {
    "api:reports/summary": ("/api/v1/reports/summary", {}),
    "api:reports/timeseries": ("/api/v1/reports/timeseries", {"metric": "conversations"}),
}
RANGES = (30, 90)
MARKER = f"{SEED_PREFIX}bench-marker"


def _summary(samples_ms: list[float]) -> dict[str, Any]:
    ordered = sorted(samples_ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "count": len(ordered),
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(p95, 1),
        "max_ms": round(ordered[-1], 1),
    }


def seed_ensure(tenant: Tenant, conversations: int) -> dict[str, Any]:
    """The tenant's generated history: made now, or found from an earlier run."""
    with tenant_scope(tenant.pk):
        marker = Customer.objects.filter(tenant=tenant, external_id=MARKER).first()
        if marker is not None and marker.metadata.get("conversations") == conversations:
            return {**marker.metadata, "reused": True}
        if marker is None:
            found = _seeded_counts(tenant)
            if found["conversations"] == conversations:
                # Seeded by ``manage.py analytics_seed`` (its output has the times).
                Customer.objects.create(tenant=tenant, external_id=MARKER, metadata=found)
                return {**found, "reused": True}
        result = analytics_seed(
            tenant=tenant,
            conversations=conversations,
            seed=14,
            replace=True,
            progress=lambda line: print(f"[seed] {line}", file=sys.stderr, flush=True),
        )
        figures = {
            "conversations": result.conversations,
            "messages": result.messages,
            "customers": result.customers,
            "tickets": result.tickets,
            "report_rows": result.report_rows,
            "days": (result.until - result.since).days + 1 if result.since and result.until else 0,
            "until": str(result.until),
            "write_seconds": round(result.write_seconds, 1),
            "rows_per_second": round(result.rows_per_second),
            "rollup_seconds": round(result.rollup_seconds, 1),
            "rollup_rows": result.rollup_rows,
            "seconds": round(result.seconds, 1),
        }
        Customer.objects.create(tenant=tenant, external_id=MARKER, metadata=figures)
    return {**figures, "reused": False}


def _seeded_counts(tenant: Tenant) -> dict[str, Any]:
    seeded = Conversation.objects.filter(
        tenant=tenant, customer__external_id__startswith=SEED_PREFIX
    )
    first = seeded.order_by("created_at").values_list("created_at", flat=True).first()
    last = seeded.order_by("-created_at").values_list("created_at", flat=True).first()
    zone = tenant_zone(tenant)
    return {
        "conversations": seeded.count(),
        "messages": Message.objects.filter(tenant=tenant, conversation__in=seeded).count(),
        "customers": Customer.objects.filter(
            tenant=tenant, external_id__startswith=SEED_PREFIX
        ).count(),
        "tickets": None,
        "report_rows": ReportRow.objects.filter(tenant=tenant).count(),
        "days": (last.astimezone(zone).date() - first.astimezone(zone).date()).days + 1
        if first and last
        else 0,
        "until": str(last.astimezone(zone).date()) if last else None,
        "write_seconds": None,
        "rows_per_second": None,
        "rollup_seconds": None,
        "rollup_rows": None,
        "seconds": None,
    }


def day_rollup(tenant: Tenant) -> dict[str, Any]:
    day = local_today(tenant) - timedelta(days=1)
    start, end = local_day_bounds(day, tenant_zone(tenant))
    with tenant_scope(tenant.pk):
        messages = Message.objects.filter(
            tenant=tenant, created_at__gte=start, created_at__lt=end
        ).count()
        rows = ReportRow.objects.filter(
            tenant=tenant, occurred_at__gte=start, occurred_at__lt=end
        ).count()
    started = time.perf_counter()
    written = rollups_rebuild(tenant=tenant, since=day, until=day)
    return {
        "day": str(day),
        "messages": messages,
        "report_rows": rows,
        "rollup_rows": written,
        "seconds": round(time.perf_counter() - started, 2),
    }


def _timed(call: Callable[[], int], requests: int) -> dict[str, Any]:
    statuses: dict[str, int] = {}
    call()  # warm-up: imports, templates, the first connection
    samples = []
    for _n in range(requests):
        started = time.perf_counter()
        status = call()
        samples.append((time.perf_counter() - started) * 1000)
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {**_summary(samples), "statuses": statuses}


def _status(
    client: Client, url: str, query: dict[str, str], headers: dict[str, str] | None = None
) -> int:
    return client.get(url, query, headers=headers or {}).status_code


def pages(tenant: Tenant, requests: int) -> dict[str, Any]:
    owner = next(login for login in DEMO_LOGINS if login.role == Role.OWNER)
    client = Client()
    client.force_login(get_user_model().objects.get(username=owner.username))
    today = local_today(tenant)
    with tenant_scope(tenant.pk):
        key = api_key_issue(tenant=tenant, name="bench reports", scopes=["reports:read"]).raw_key
    measured: dict[str, Any] = {}
    missing = []
    for name in PAGES:
        try:
            url = reverse(name)
        except NoReverseMatch:
            missing.append(name)
            continue
        for days in RANGES:
            query = {"since": str(today - timedelta(days=days - 1)), "until": str(today)}
            measured[f"{name} {days}d"] = _timed(partial(_status, client, url, query), requests)
    bearer = {"Authorization": f"Bearer {key}"}
    for name, (url, extra) in API.items():
        for days in RANGES:
            query = {"since": str(today - timedelta(days=days - 1)), "until": str(today), **extra}
            measured[f"{name} {days}d"] = _timed(
                partial(_status, client, url, query, bearer), requests
            )
    worst = max((m["p95_ms"] for k, m in measured.items() if k.startswith("admin:")), default=None)
    return {
        "requests": requests,
        "measured": measured,
        "missing": missing,
        "worst_page_p95_ms": worst,
    }


def topics(questions: int) -> dict[str, Any]:
    try:
        topics_module = importlib.import_module("analytics.topics")
    except ImportError:
        return {"missing": "analytics.topics"}
    benchmark = getattr(topics_module, "topics_benchmark", None)
    if benchmark is None or questions <= 0:
        return {"missing": "analytics.topics.topics_benchmark"} if benchmark is None else {}
    started = time.perf_counter()
    figures = benchmark(questions)
    return {
        "questions": questions,
        "seconds": round(time.perf_counter() - started, 1),
        "result": figures if isinstance(figures, dict) else str(figures),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--topics", type=int, default=100_000)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        raise SystemExit("phase H needs PostgreSQL: DATABASE_URL=postgres://...")
    call_command("migrate", interactive=False, verbosity=0)
    with scope_entry():
        tenant = demo_tenant_setup(origins=[]).tenant
    started = time.perf_counter()
    seeding = seed_ensure(tenant, args.conversations)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    results: dict[str, Any] = {
        "seed": seeding,
        "prepare_seconds": round(time.perf_counter() - started, 1),
    }
    results["day_rollup"] = day_rollup(tenant)
    results["pages"] = pages(tenant, args.requests)
    results["topics"] = topics(args.topics)
    with tenant_scope(tenant.pk):
        results["conversations_in_database"] = Conversation.objects.filter(tenant=tenant).count()
    print(json.dumps(results, ensure_ascii=False))


if __name__ == "__main__":
    main()
