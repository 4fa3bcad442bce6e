from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from analytics.gaps import gaps_refresh
from analytics.topics import default_period, topics_refresh
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Cluster a tenant's customer questions into hot topics and find its knowledge gaps for "
        "a range of its local days (default: the last 7, today included). Idempotent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="The tenant's slug.")
        parser.add_argument("--since", type=date.fromisoformat, default=None, help="YYYY-MM-DD.")
        parser.add_argument(
            "--until", type=date.fromisoformat, default=None, help="YYYY-MM-DD, included."
        )
        parser.add_argument(
            "--no-llm-labels",
            action="store_true",
            help="Name new topics by their representative question, without asking the LLM.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"no tenant {options['tenant']!r}")
        default_since, default_until = default_period(tenant)
        until = options["until"] or default_until
        since = options["since"] or until - (default_until - default_since)
        if until < since:
            raise CommandError("--until is before --since")
        topics = topics_refresh(
            tenant=tenant, since=since, until=until, llm_labels=not options["no_llm_labels"]
        )
        gaps = gaps_refresh(tenant=tenant, since=since, until=until)
        self.stdout.write(
            f"{tenant.slug} {since} to {until}: {topics.questions} questions, "
            f"{topics.clustered} in {topics.topics} topics ({topics.new_topics} new) in "
            f"{topics.seconds}s; {gaps.gaps} knowledge gaps ({gaps.new_gaps} new) from "
            f"{gaps.signalled} signalled messages in {gaps.seconds}s"
        )
