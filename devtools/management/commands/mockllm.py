import contextlib
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from devtools.mockllm import (
    FAULTS,
    MockLLMApp,
    MockLLMConfig,
    bind_socket,
    make_uvicorn_server,
    socket_base_url,
)


class Command(BaseCommand):
    help = (
        "Serve the mock OpenAI-compatible LLM (chat completions, embeddings, fault injection) "
        "that tests and benchmarks use instead of a real provider."
    )
    # The mock touches neither models nor the database: starting fast matters more.
    requires_system_checks = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Interface to listen on.")
        parser.add_argument("--port", type=int, default=8001, help="Port; 0 picks a free one.")
        parser.add_argument(
            "--ttft-ms", type=float, default=0, help="Delay before the first content token."
        )
        parser.add_argument("--token-ms", type=float, default=0, help="Delay between tokens.")
        parser.add_argument(
            "--text", default=None, help="Fixed answer; default: echo the last user message."
        )
        parser.add_argument("--fault", choices=FAULTS, default=None, help="Fault to inject.")
        parser.add_argument(
            "--fault-count",
            type=int,
            default=None,
            help="Inject the fault into the next N model calls only; default: all of them.",
        )
        parser.add_argument(
            "--retry-after-ms", type=int, default=1000, help="Retry-After sent with a 429."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            config = MockLLMConfig(
                ttft_ms=options["ttft_ms"],
                token_ms=options["token_ms"],
                text=options["text"],
                fault=options["fault"],
                fault_count=options["fault_count"],
                retry_after_ms=options["retry_after_ms"],
            )
            sock = bind_socket(options["host"], options["port"])
        except (ValueError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        app = MockLLMApp(config)
        server = make_uvicorn_server(
            app, log_level="info" if options["verbosity"] > 1 else "warning"
        )
        self.stdout.write(f"Mock LLM listening on {socket_base_url(sock)} — press Ctrl+C to stop.")
        self.stdout.flush()
        # uvicorn shuts down gracefully on Ctrl+C, then re-raises the signal; like `uvicorn.run`,
        # end quietly instead of printing a KeyboardInterrupt traceback.
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=[sock])
