"""Latency of the knowledge engine's service API on a large tenant (BM25 path).

Builds a throwaway tenant with N FAQ entries (3 BANKING77 phrasings and an answer each) inside a
rolled-back transaction, warms its index, then times ``faq_match`` and ``knowledge_search`` on
2,000 BANKING77 questions.

    python bench/knowledge_latency.py [--entries 10000] [--csv PATH/TO/banking77/train.csv]
"""

import argparse
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "helpdesk_site.settings.base")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402

from bench.banking77 import CSV_HELP, DEFAULT_CSV, banking77_split  # noqa: E402
from knowledge.models import KnowledgeEntry  # noqa: E402
from knowledge.search import faq_match, knowledge_search, registry  # noqa: E402
from tenants.models import Tenant  # noqa: E402
from tenants.scoping import enter_all_tenants  # noqa: E402


def percentiles(samples: list[float]) -> str:
    values = np.array(samples) * 1000
    p50, p99 = np.percentile(values, 50), np.percentile(values, 99)
    return f"p50 {p50:.3f} ms  p99 {p99:.3f} ms  max {values.max():.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV, help=CSV_HELP)
    args = parser.parse_args()
    enter_all_tenants("the benchmark arranges and measures its own tenants' rows")
    call_command("migrate", verbosity=0)
    knowledge_base, queries = banking77_split(args.csv)
    texts = [text for text, _intent in knowledge_base + queries]
    rng = random.Random(7)  # noqa: S311 - reproducible synthetic data
    with transaction.atomic():
        tenant = Tenant.objects.create(name="latency", slug=f"latency-{time.time_ns()}")
        KnowledgeEntry.objects.bulk_create(
            (
                KnowledgeEntry(
                    tenant=tenant,
                    question=rng.choice(texts),
                    alternate_questions=rng.sample(texts, 2),
                    answer=f"{rng.choice(texts)} {rng.choice(texts)}",
                )
                for _ in range(args.entries)
            ),
            batch_size=2000,
        )
        started = time.perf_counter()
        index = registry._build(tenant.pk)
        print(f"{args.entries} entries: index built in {time.perf_counter() - started:.2f} s")
        sample = [text for text, _intent in rng.sample(queries, min(args.queries, len(queries)))]
        for name, call in (
            ("faq_match", lambda q: faq_match(tenant=tenant, query=q)),
            ("knowledge_search k=5", lambda q: knowledge_search(tenant=tenant, query=q, k=5)),
        ):
            for query in sample[:100]:  # warm-up
                call(query)
            timings = []
            for query in sample:
                started = time.perf_counter()
                call(query)
                timings.append(time.perf_counter() - started)
            print(f"{name:22} {percentiles(timings)}")
        registry.forget(tenant.pk)
        transaction.set_rollback(True)
    del index


if __name__ == "__main__":
    main()
