from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from analytics.rollups import local_today, rollups_rebuild
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Rebuild the analytics rollups (daily, and hourly for the recent days) of a range of "
        "days in each tenant's time zone, for one tenant or all. Idempotent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", default=None, help="Only this tenant's (slug).")
        parser.add_argument(
            "--since", type=date.fromisoformat, required=True, help="First day (YYYY-MM-DD)."
        )
        parser.add_argument(
            "--until",
            type=date.fromisoformat,
            default=None,
            help="Last day, included (YYYY-MM-DD); default: the tenant's today.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        tenants = Tenant.objects.order_by("pk")
        if options["tenant"] is not None:
            tenants = tenants.filter(slug=options["tenant"])
            if not tenants.exists():
                raise CommandError(f"no tenant {options['tenant']!r}")
        for tenant in tenants:
            until = options["until"] or local_today(tenant)
            if until < options["since"]:
                raise CommandError("--until is before --since")
            written = rollups_rebuild(tenant=tenant, since=options["since"], until=until)
            self.stdout.write(
                f"{tenant.slug}: {options['since']} to {until} rebuilt, {written} rollup rows"
            )
