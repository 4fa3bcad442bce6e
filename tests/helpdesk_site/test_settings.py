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
    "CHANNEL_LAYER_MAX_CONNECTIONS",
    "CHANNEL_LAYER_SOCKET_TIMEOUT",
    "DATABASE_CONN_HEALTH_CHECKS",
    "LOG_LEVEL",
    "TRANSPORT_LOG_LEVEL",
    "SITE_URL",
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


def _probe(
    settings_module: str = "helpdesk_site.settings.base", probe: str = PROBE, **env: str
) -> dict:
    result = _run(["-c", probe], settings_module, **env)
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
        "layer": "helpdesk_site.channel_layer.DegradingRedisChannelLayer",
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
    "SITE_URL": "https://help.example.com",
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
    "site_url", ["", "http://help.example.com", "https://localhost:8000", "https://example.com/x"]
)
def test_deployment_checklist_wants_the_public_https_site_url(site_url: str) -> None:
    env = {**PRODUCTION_ENV, "SITE_URL": site_url}
    result = _run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        "helpdesk_site.settings.production",
        **env,
    )
    assert result.returncode != 0
    assert "kefu.E001" in result.stderr
    assert "SITE_URL" in result.stderr


DEMO_PROBE = """
import json, django
django.setup()
from django.test import Client
response = Client().get("/demo/", secure=True, headers={"host": "help.example.com"})
print(json.dumps({"status": response.status_code}))
"""


def test_production_does_not_serve_the_demo_shop() -> None:
    probe = _probe("helpdesk_site.settings.production", probe=DEMO_PROBE, **PRODUCTION_ENV)
    assert probe == {"status": 404}


DEVTOOLS_PROBE = """
import json, django
from django.apps import apps
django.setup()
print(json.dumps({"devtools": apps.is_installed("devtools")}))
"""


@pytest.mark.parametrize(
    ("settings_module", "installed"),
    [
        ("helpdesk_site.settings.base", True),
        ("helpdesk_site.settings.test", True),
        ("helpdesk_site.settings.production", False),
    ],
)
def test_only_development_and_test_settings_install_the_devtools_app(
    settings_module: str, installed: bool
) -> None:
    probe = _probe(settings_module, probe=DEVTOOLS_PROBE, **PRODUCTION_ENV)
    assert probe == {"devtools": installed}


@pytest.mark.parametrize("command", ["demo", "mockllm"])
def test_production_has_no_development_commands(command: str) -> None:
    development = _run(["manage.py", command, "--help"], "helpdesk_site.settings.base")
    assert development.returncode == 0, development.stderr

    result = _run(
        ["manage.py", command, "--help"], "helpdesk_site.settings.production", **PRODUCTION_ENV
    )

    assert result.returncode == 1
    assert f"Unknown command: '{command}'" in result.stderr


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


# What channels-redis really builds from CHANNEL_LAYERS (creating a pool does not connect).
LAYER_POOL_PROBE = """
import json, django
django.setup()
from channels.layers import get_channel_layer
pool = get_channel_layer().create_pool(0)
print(json.dumps({
    "socket_timeout": pool.connection_kwargs["socket_timeout"],
    "max_connections": pool.max_connections,
}))
"""


def test_channel_layer_outwaits_its_blocking_reads_and_bounds_its_pool() -> None:
    # BZPOPMIN waits up to 5 s: a 5 s socket timeout (redis-py's default) raced it.
    probe = _probe(probe=LAYER_POOL_PROBE, REDIS_URL="redis://127.0.0.1:6379/3")
    assert probe == {"socket_timeout": 15.0, "max_connections": 1000}


def test_channel_layer_pool_follows_the_environment() -> None:
    probe = _probe(
        probe=LAYER_POOL_PROBE,
        REDIS_URL="redis://127.0.0.1:6379/3",
        CHANNEL_LAYER_MAX_CONNECTIONS="250",
        CHANNEL_LAYER_SOCKET_TIMEOUT="30",
    )
    assert probe == {"socket_timeout": 30.0, "max_connections": 250}


# The app loaded the way uvicorn loads it: uvicorn applies --log-level, then importing the
# application sets Django up, which applies LOGGING.
SERVER_LOGGING_PROBE = """
import json, logging, uvicorn
config = uvicorn.Config("helpdesk_site.asgi:application", lifespan="off", log_level="info")
config.load()
print(json.dumps({
    **{
        name: logging.getLevelName(logging.getLogger(name).getEffectiveLevel())
        for name in ("uvicorn.error", "httpx2", "httpcore2", "conversations")
    },
    "uvicorn_handlers": len(logging.getLogger("uvicorn").handlers),
}))
"""


@pytest.mark.parametrize(
    ("settings_module", "env"),
    [("helpdesk_site.settings.base", {}), ("helpdesk_site.settings.production", PRODUCTION_ENV)],
)
def test_server_process_logs_no_line_per_connection_or_request(
    settings_module: str, env: dict[str, str]
) -> None:
    probe = _probe(settings_module, probe=SERVER_LOGGING_PROBE, **env)
    assert probe == {
        "uvicorn.error": "WARNING",
        "httpx2": "WARNING",
        "httpcore2": "WARNING",
        "conversations": "INFO",
        "uvicorn_handlers": 1,
    }


def test_transport_log_level_brings_connection_lines_back() -> None:
    probe = _probe(probe=SERVER_LOGGING_PROBE, TRANSPORT_LOG_LEVEL="INFO")
    assert probe["uvicorn.error"] == probe["httpx2"] == "INFO"


HEALTH_CHECKS_PROBE = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps(settings.DATABASES["default"]["CONN_HEALTH_CHECKS"]))
"""


@pytest.mark.parametrize(
    ("settings_module", "env", "expected"),
    [
        ("helpdesk_site.settings.base", {}, True),
        ("helpdesk_site.settings.production", PRODUCTION_ENV, True),
        (
            "helpdesk_site.settings.production",
            {**PRODUCTION_ENV, "DATABASE_CONN_HEALTH_CHECKS": "false"},
            False,
        ),
    ],
)
def test_database_health_checks_are_on_unless_turned_off(
    settings_module: str, env: dict[str, str], expected: bool
) -> None:
    assert _probe(settings_module, probe=HEALTH_CHECKS_PROBE, **env) is expected
