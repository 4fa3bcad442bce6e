"""Configuration from the environment: embedded defaults, Redis when asked, safe production."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAFE_SECRET = "k3fu-" + "x7Qp9ZrT2m" * 6
CONFIG_VARS = (
    "DATABASE_URL",
    "REDIS_URL",
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
    "CELERY_BROKER_URL",
)

PROBE = """
import json, django
from django.conf import settings
django.setup()
from helpdesk_site.celery import app
print(json.dumps({
    "db": settings.DATABASES["default"]["ENGINE"],
    "layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "cache": settings.CACHES["default"]["BACKEND"],
    "eager": app.conf.task_always_eager,
    "broker": app.conf.broker_url,
    "debug": settings.DEBUG,
}))
"""


def _run(args: list[str], settings_module: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if k not in CONFIG_VARS and not k.startswith("KEFU")
    }
    clean.update(DJANGO_SETTINGS_MODULE=settings_module, **env)
    return subprocess.run(  # noqa: S603
        [sys.executable, *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


def _probe(settings_module: str = "helpdesk_site.settings.base", **env: str) -> dict:
    result = _run(["-c", PROBE], settings_module, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_nothing_configured_means_embedded_defaults() -> None:
    assert _probe() == {
        "db": "django.db.backends.sqlite3",
        "layer": "channels.layers.InMemoryChannelLayer",
        "cache": "django.core.cache.backends.locmem.LocMemCache",
        "eager": True,
        "broker": "memory://",
        "debug": False,
    }


def test_urls_switch_to_postgresql_and_redis() -> None:
    probe = _probe(
        DATABASE_URL="postgres://kefu@127.0.0.1:5432/kefu", REDIS_URL="redis://127.0.0.1:6379/3"
    )
    assert probe == {
        "db": "django.db.backends.postgresql",
        "layer": "channels_redis.core.RedisChannelLayer",
        "cache": "django.core.cache.backends.redis.RedisCache",
        "eager": False,
        "broker": "redis://127.0.0.1:6379/3",
        "debug": False,
    }


PRODUCTION_ENV = {
    "SECRET_KEY": SAFE_SECRET,
    "ALLOWED_HOSTS": "help.example.com",
    "DATABASE_URL": "postgres://kefu@127.0.0.1:5432/kefu",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}


def test_production_settings_pass_the_deployment_checklist() -> None:
    result = _run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        "helpdesk_site.settings.production",
        **PRODUCTION_ENV,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("override", "complaint"),
    [
        ({"SECRET_KEY": ""}, "SECRET_KEY"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY"),
        ({"DEBUG": "true"}, "DEBUG"),
        ({"ALLOWED_HOSTS": "*"}, "ALLOWED_HOSTS"),
        ({"DATABASE_URL": ""}, "DATABASE_URL"),
        ({"REDIS_URL": ""}, "REDIS_URL"),
    ],
)
def test_production_refuses_unsafe_values(override: dict[str, str], complaint: str) -> None:
    env = {**PRODUCTION_ENV, **override}
    env = {k: v for k, v in env.items() if v}
    result = _run(["manage.py", "check"], "helpdesk_site.settings.production", **env)
    assert result.returncode != 0
    assert "Unsafe production configuration" in result.stderr
    assert complaint in result.stderr
