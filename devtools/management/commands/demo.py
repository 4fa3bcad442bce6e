from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from devtools.demo import DEMO_HISTORY_DAYS, demo_history_ensure, demo_tenant_setup
from tenants.scoping import scope_entry


def parse_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandError(
            f"--addr must look like HOST:PORT, for example 127.0.0.1:8000 (got {addr!r})."
        )
    return host.strip("[]"), int(port)


class Command(BaseCommand):
    help = "Prepare the demo tenant “Acme Shop” and serve Kefu (HTTP and WebSocket)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--addr", default="127.0.0.1:8000", help="HOST:PORT to serve on.")
        parser.add_argument(
            "--setup-only", action="store_true", help="Prepare the data, do not serve."
        )
        parser.add_argument(
            "--no-history",
            action="store_true",
            help="Do not generate the weeks of past conversations the dashboards show.",
        )

    def handle(
        self, *args: Any, addr: str, setup_only: bool, no_history: bool, **options: Any
    ) -> None:
        host, port = parse_addr(addr)
        verbosity = options["verbosity"]
        call_command("migrate", interactive=False, verbosity=max(0, verbosity - 1))
        shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
        base_url = f"http://{shown_host}:{port}"
        origins = [base_url, f"http://localhost:{port}"]
        with scope_entry():
            summary = demo_tenant_setup(origins=list(dict.fromkeys(origins)))
            history = None if no_history else demo_history_ensure(tenant=summary.tenant)

        self.stdout.write(self.style.SUCCESS(f"Demo tenant “{summary.tenant.name}” is ready."))
        self.stdout.write(
            f"  FAQ entries: {summary.faq_total} ({summary.faq_created} added now)\n"
            f"  Demo shop:   {base_url}/demo/   (the customer widget on a sample page)\n"
            f"  Console:     {base_url}/console/\n"
            f"  Agents:      {base_url}/console/agent/\n"
            f"  Widget key:  {summary.tenant.public_key}\n"
            f"  Widget WS:   ws://{shown_host}:{port}/ws/widget/{summary.tenant.public_key}/"
        )
        if history is not None:
            self.stdout.write(
                f"  History:     {history.conversations} conversations over the last "
                f"{DEMO_HISTORY_DAYS} days generated in {history.seconds:.1f} s "
                "(reports, topics and gaps)"
            )
        for login in summary.logins:
            self.stdout.write(
                f"  Login ({login.role.label.lower()}): {login.username} / {login.password}"
            )
        if setup_only:
            return
        self.stdout.write(f"Serving on {base_url} — press Ctrl+C to stop.")
        import uvicorn

        uvicorn.run(
            "helpdesk_site.asgi:application",
            host=host,
            port=port,
            lifespan="off",
            # Compression costs ~64 KB of zlib state per socket for small JSON frames.
            ws_per_message_deflate=False,
            log_level="info" if verbosity > 1 else "warning",
        )
