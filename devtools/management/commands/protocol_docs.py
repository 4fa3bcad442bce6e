from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from devtools.protocol_docs import DOCUMENT, document_render


class Command(BaseCommand):
    help = (
        "Rewrite the frame and error-code tables of docs/widget-protocol.md from the sockets' "
        "frame models (conversations/protocol.py, conversations/agent_protocol.py)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--check", action="store_true", help="Fail if the document is out of date."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        text = DOCUMENT.read_text(encoding="utf-8")
        rendered = document_render(text)
        if options["check"]:
            if rendered != text:
                raise CommandError(f"{DOCUMENT} is out of date: run manage.py protocol_docs")
            return
        DOCUMENT.write_text(rendered, encoding="utf-8")
        self.stdout.write(f"wrote {DOCUMENT}")
