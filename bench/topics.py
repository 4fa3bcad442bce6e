"""Hot topics and knowledge gaps end to end on a large tenant: N synthetic questions stored as
conversations (one customer question and an offline answer for a tenth of them), then
``manage.py analytics_topics`` timed, inside a rolled-back transaction.

    python bench/topics.py [--questions 100000]

``analytics.topics.topics_benchmark(n)`` times the clustering alone (no database).
"""

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "helpdesk_site.settings.base")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402

from analytics.topics import benchmark_questions  # noqa: E402
from conversations.models import Conversation, Customer, Message  # noqa: E402
from tenants.models import Tenant  # noqa: E402
from tenants.scoping import enter_all_tenants  # noqa: E402


def seed(tenant: Tenant, n: int) -> None:
    # created_at is auto_now_add: every message is "now", one question per conversation.
    texts = benchmark_questions(n)
    customers = Customer.objects.bulk_create(
        Customer(tenant=tenant, external_id=f"bench-{i}") for i in range(n // 5)
    )
    conversations = Conversation.objects.bulk_create(
        (Conversation(tenant=tenant, customer=customers[i % len(customers)]) for i in range(n)),
        batch_size=5000,
    )
    messages = []
    for i, (conversation, text) in enumerate(zip(conversations, texts, strict=True)):
        messages.append(
            Message(tenant=tenant, conversation=conversation, role="customer", content=text)
        )
        if i % 10 == 0:  # a tenth answered by the offline responder: knowledge gaps
            messages.append(
                Message(
                    tenant=tenant,
                    conversation=conversation,
                    role="assistant",
                    content="Sorry.",
                    source="offline",
                )
            )
    Message.objects.bulk_create(messages, batch_size=5000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--questions", type=int, default=100_000)
    args = parser.parse_args()
    enter_all_tenants("a benchmark on a throwaway tenant")
    with transaction.atomic():
        tenant = Tenant.objects.create(name="Topics bench", slug="topics-bench")
        started = time.perf_counter()
        seed(tenant, args.questions)
        print(f"seeded {args.questions} questions in {time.perf_counter() - started:.1f}s")
        started = time.perf_counter()
        call_command("analytics_topics", "--tenant", tenant.slug, "--no-llm-labels")
        print(f"analytics_topics: {time.perf_counter() - started:.1f}s")
        transaction.set_rollback(True)


if __name__ == "__main__":
    main()
