"""The demo shop page: a sample website with the demo tenant's widget on it."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from devtools.demo import DEMO_SLUG
from tenants.models import Tenant


@require_GET
def demo_shop(request: HttpRequest) -> HttpResponse:
    """A fake shop page with the demo tenant's widget on it (``manage.py demo`` creates it)."""
    tenant = (
        Tenant.objects.filter(slug=DEMO_SLUG, is_active=True).first()
        or Tenant.objects.filter(is_active=True).order_by("id").first()
    )
    return render(
        request,
        "demo/shop.html",
        {
            "tenant": tenant,
            "widget_src": request.build_absolute_uri("/static/kefu/widget.js"),
            "console_url": reverse("admin:index"),
        },
    )
