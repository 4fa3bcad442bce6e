from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from conversations.lifecycle import conversations_sweep
from tenants.scoping import tenant_or_all_tenants


class Command(BaseCommand):
    help = (
        "Record conversations resolved by the assistant and conversations abandoned in the "
        "queue (what `celery beat` runs every minute), for one tenant or all."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", type=int, default=None, help="Only this tenant's (id).")

    def handle(self, *args: Any, **options: Any) -> None:
        with tenant_or_all_tenants(options["tenant"], "without --tenant the sweep covers all"):
            counts = conversations_sweep(tenant_id=options["tenant"])
        for tenant, changed in counts.items():
            self.stdout.write(
                f"tenant {tenant}: {changed.resolved_by_ai} resolved by the assistant, "
                f"{changed.abandoned} abandoned"
            )
        if not counts:
            self.stdout.write("nothing to record")
