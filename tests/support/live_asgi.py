"""Kefu's real ASGI application served by uvicorn in a thread, for browser tests.

Unlike pytest-django's ``live_server`` (WSGI, HTTP only) this serves WebSockets too, and it can
be stopped and started again on the same port to test reconnection. Tests that use it need the
transactional database (``@pytest.mark.django_db(transaction=True)``) so that the server's
threads see their data.
"""

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from helpdesk_site.asgi import application


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveAsgiServer:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        config = uvicorn.Config(
            application,
            host="127.0.0.1",
            port=self.port,
            lifespan="off",
            log_level="warning",
            ws_per_message_deflate=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the ASGI server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self, timeout: float = 60.0) -> None:
        """Stops the server and waits for its thread. A server left running would keep its
        consumers' pending channel-layer receives on its event loop, and the next test's own
        loop would then be refused by the shared layer; so a server that does not stop is an
        error here, not in whichever test comes next."""
        if self._server is None or self._thread is None:
            return
        server, thread = self._server, self._thread
        self._server = self._thread = None
        server.should_exit = True
        thread.join(timeout / 2)
        if thread.is_alive():
            # Stop waiting for open connections and background tasks to finish by themselves.
            server.force_exit = True
            thread.join(timeout / 2)
        if thread.is_alive():
            raise RuntimeError(f"the ASGI server on port {self.port} did not stop in {timeout} s")

    def restart(self, pause: float = 0.0) -> None:
        """Stops the server (open sockets drop), waits ``pause`` seconds, starts it again."""
        self.stop()
        time.sleep(pause)
        self.start()


@pytest.fixture
def live_asgi() -> Iterator[LiveAsgiServer]:
    server = LiveAsgiServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
