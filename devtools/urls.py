from django.urls import path

from devtools.views import demo_shop

urlpatterns = [
    path("demo/", demo_shop, name="demo"),
]
