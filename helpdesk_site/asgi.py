"""ASGI entry point: HTTP goes to Django, WebSocket to the Channels consumers."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "helpdesk_site.settings.base")

# Django must be set up before anything imports models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from helpdesk_site.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Widget sockets check the Origin against their tenant's allowed origins in the
        # consumer, so there is no global origin validator here. Session and auth middleware
        # wrap only the routes that use them (helpdesk_site/routing.py).
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
