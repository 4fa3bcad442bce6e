from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from analytics.seed import analytics_seed
from tenants.models import Tenant
from tenants.scoping import tenant_scope


class Command(BaseCommand):
    help = (
        "Generate realistic history for a tenant (customers, conversations, messages, tickets and "
        "their reporting rows) over the last days, then rebuild its rollups. A second run adds "
        "more history; --replace deletes what earlier runs generated first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="The tenant's slug.")
        parser.add_argument(
            "--conversations", type=int, required=True, help="How many conversations."
        )
        parser.add_argument("--days", type=int, default=42, help="Over how many days (42).")
        parser.add_argument("--seed", type=int, default=None, help="Random seed (repeatable).")
        parser.add_argument(
            "--end",
            type=date.fromisoformat,
            default=None,
            help="Last day (YYYY-MM-DD, the tenant's time zone); default: today, up to now.",
        )
        parser.add_argument(
            "--replace",
            action="store_true",
            help="First delete the history earlier runs generated for this tenant.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["conversations"] < 0 or options["days"] < 1:
            raise CommandError("--conversations must be 0 or more and --days 1 or more")
        tenant = Tenant.objects.filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"no tenant {options['tenant']!r}")
        with tenant_scope(tenant.pk):
            result = analytics_seed(
                tenant=tenant,
                conversations=options["conversations"],
                days=options["days"],
                seed=options["seed"],
                end=options["end"],
                replace=options["replace"],
                progress=self.stdout.write if options["verbosity"] > 0 else None,
            )
        if result.deleted_conversations:
            self.stdout.write(f"Deleted {result.deleted_conversations} earlier conversations.")
        self.stdout.write(
            self.style.SUCCESS(
                f"{tenant.slug}: {result.since} to {result.until}: {result.conversations} "
                f"conversations, {result.messages} messages, {result.customers} customers, "
                f"{result.tickets} tickets, {result.report_rows} reporting rows in "
                f"{result.write_seconds:.1f} s ({result.rows_per_second:,.0f} rows/s); "
                f"{result.rollup_rows} rollup rows in {result.rollup_seconds:.1f} s"
            )
        )
