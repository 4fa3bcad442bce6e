"""WebSocket routes, each with only the middleware its consumer uses.

The widget's socket is anonymous: it names its tenant by public key and checks the Origin
against that tenant's allowed origins itself (``WidgetConsumer.connect``), so it runs without
the cookie, session and auth middleware. Those would cost every widget connect a thread hop
(``AuthMiddleware`` resolves the user through ``database_sync_to_async``) and every idle socket
a session store, a cookie dict and copies of its scope, for nothing it reads. The agent
console's socket is the one that needs the signed-in user and the session's active tenant;
since the browser sends that cookie whatever page opens the socket, the page's Origin is checked
first (``helpdesk_site.origins``).
"""

from channels.auth import AuthMiddlewareStack
from django.urls import path

from conversations.agent_consumer import AgentConsumer
from conversations.consumers import WidgetConsumer
from helpdesk_site.origins import ConsoleOriginValidator

websocket_urlpatterns = [
    path("ws/widget/<str:public_key>/", WidgetConsumer.as_asgi()),
    path("ws/agent/", ConsoleOriginValidator(AuthMiddlewareStack(AgentConsumer.as_asgi()))),
]
