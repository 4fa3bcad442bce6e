"""The OpenAPI schema, checked the way CI checks it (``spectacular --validate --fail-on-warn``)
and for the conventions every operation follows: a documented 2xx answer, the API-key security
requirement, an operation id, a tag, and a description that states the scope it needs."""

import re
from typing import Any

import pytest
import yaml
from django.urls import resolve
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema

from tenants.authentication import ANY_KEY, required_scope

METHODS = ("get", "put", "patch", "post", "delete", "head", "options", "trace")


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    GENERATOR_STATS.reset()
    generated = SchemaGenerator().get_schema(request=None, public=True)
    warnings, errors = dict(GENERATOR_STATS._warn_cache), dict(GENERATOR_STATS._error_cache)
    GENERATOR_STATS.reset()
    assert not errors, errors
    assert not warnings, warnings
    return generated


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def test_the_schema_generates_without_warnings_and_validates(schema) -> None:
    validate_schema(schema)  # raises on an invalid OpenAPI 3 document
    assert schema["paths"], "no API operation in the schema"


def test_every_path_is_under_api_v1_without_a_trailing_slash(schema) -> None:
    for path in schema["paths"]:
        assert path.startswith("/api/v1/"), path
        assert not path.endswith("/"), path


def test_every_operation_follows_the_conventions(schema) -> None:
    operation_ids = []
    for path, method, operation in _operations(schema):
        where = f"{method.upper()} {path}"
        operation_ids.append(operation.get("operationId"))
        assert operation.get("operationId"), where
        assert operation.get("tags"), where
        assert operation.get("security") == [{"ApiKey": []}], where
        successes = [code for code in operation["responses"] if re.fullmatch(r"2\d\d", code)]
        assert successes, f"{where}: no documented 2xx response"
        for code in successes:
            if code != "204":
                assert operation["responses"][code].get("content"), f"{where} {code}: no body"
        for code in ("400", "401", "403", "429"):
            error = operation["responses"][code]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/Error"}, where
        # The description states the scope the view really checks.
        view = resolve(re.sub(r"\{[^}]+\}", "1", path)).func.cls
        scope = required_scope(view, method.upper())
        assert scope is not None, where
        stated = "any live API key" if scope == ANY_KEY else f"`{scope}` (or `admin`)"
        assert f"**Scope:** {stated}" in operation.get("description", ""), where
        assert operation["description"].split("**Scope:**")[0].strip(), f"{where}: say what"
    assert len(operation_ids) == len(set(operation_ids)), "operation ids repeat"


def test_the_security_scheme_is_the_bearer_api_key(schema) -> None:
    assert schema["components"]["securitySchemes"] == {
        "ApiKey": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "kefu_…",
            "description": "An API key issued in the console (API keys): "
            "`Authorization: Bearer kefu_…`.",
        }
    }
    error_code = schema["components"]["schemas"]["ErrorCode"]
    assert "missing_scope" in error_code["enum"]


def test_the_schema_and_docs_are_public_and_self_hosted(client, schema) -> None:
    served = client.get("/api/v1/schema")
    swagger = client.get("/api/v1/docs")
    redoc = client.get("/api/v1/docs/redoc")

    assert served.status_code == 200
    assert yaml.safe_load(served.content)["paths"].keys() == schema["paths"].keys()
    for page in (swagger, redoc):
        assert page.status_code == 200
        html = page.content.decode()
        assert "/api/v1/schema" in html
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "a page loads from afar"
        assert "/static/drf_spectacular_sidecar/" in html
