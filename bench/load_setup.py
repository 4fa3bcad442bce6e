"""Benchmark data: the demo tenant (``manage.py demo --setup-only`` made it) gets an LLM
provider pointing at the mock LLM and an API key for headless chat, and PostgreSQL fresh planner
statistics. Prints ``{"public_key", "api_key", "faq_entries", "faq_phrasings"}``: the FAQ's
questions and alternate phrasings as stored, less any that would ask for a person.

    python bench/load_setup.py --llm-url http://127.0.0.1:PORT/v1
"""

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "helpdesk_site.settings.base")

import django

django.setup()

from django.db import connection  # noqa: E402

from conversations.handoff import asks_for_person  # noqa: E402
from devtools.demo import DEMO_SLUG  # noqa: E402
from knowledge.models import KnowledgeEntry  # noqa: E402
from tenants.models import LLMProvider, Tenant  # noqa: E402
from tenants.scoping import enter_all_tenants  # noqa: E402
from tenants.services import api_key_issue  # noqa: E402

PROVIDER_NAME = "bench mock LLM"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llm-url", required=True)
    args = parser.parse_args()
    enter_all_tenants("the benchmark arranges and measures its own tenants' rows")
    tenant = Tenant.objects.get(slug=DEMO_SLUG)
    # The benchmark's provider is the tenant's only one: another would be tried first or after.
    LLMProvider.objects.filter(tenant=tenant).exclude(name=PROVIDER_NAME).update(enabled=False)
    LLMProvider.objects.update_or_create(
        tenant=tenant,
        name=PROVIDER_NAME,
        defaults={"base_url": args.llm_url, "model": "kefu-mock", "enabled": True, "priority": 1},
    )
    entries = KnowledgeEntry.objects.filter(tenant=tenant, enabled=True).order_by("id")
    phrasings = [
        phrasing
        for entry in entries
        for phrasing in (entry.question, *entry.alternate_questions)
        if not asks_for_person(tenant=tenant, text=phrasing)
    ]
    issued = api_key_issue(tenant=tenant, name="bench headless chat", scopes=["chat"])
    if connection.vendor == "postgresql":
        # The planner statistics autovacuum keeps in production: on a server without autovacuum
        # every table of a reused benchmark database looks empty to the planner, and the API's
        # per-request lookups were planned as scans that grew with every run.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    print(
        json.dumps(
            {
                "public_key": tenant.public_key,
                "api_key": issued.raw_key,
                "faq_entries": len(entries),
                "faq_phrasings": phrasings,
            },
            ensure_ascii=False,
        )
    )


if __name__ == "__main__":
    main()
