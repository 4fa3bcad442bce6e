from django.urls import path

from conversations.consumers import WidgetConsumer

websocket_urlpatterns = [
    path("ws/widget/<str:public_key>/", WidgetConsumer.as_asgi()),
]
