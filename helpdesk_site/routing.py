from django.urls import path

from conversations.agent_consumer import AgentConsumer
from conversations.consumers import WidgetConsumer

websocket_urlpatterns = [
    path("ws/widget/<str:public_key>/", WidgetConsumer.as_asgi()),
    path("ws/agent/", AgentConsumer.as_asgi()),
]
