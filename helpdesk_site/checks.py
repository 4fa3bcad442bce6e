"""Deployment checks run by ``manage.py check --deploy``."""

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


@register(Tags.security, deploy=True)
def site_url_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Links in e-mails are built from ``SITE_URL``: it must be the public https origin."""
    parts = urlsplit(settings.SITE_URL)
    public = parts.hostname is not None and parts.hostname not in LOOPBACK_HOSTS
    if parts.scheme == "https" and public and parts.path in ("", "/"):
        return []
    return [
        Error(
            f"SITE_URL is {settings.SITE_URL!r}; links in e-mails would not reach this deployment.",
            hint="Set SITE_URL to the public https origin, e.g. https://help.example.com",
            id="kefu.E001",
        )
    ]
