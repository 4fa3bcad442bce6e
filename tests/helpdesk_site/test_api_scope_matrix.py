"""Every operation of the API schema, whoever wrote it, refuses what it must: no key (401), a
revoked key (401), a key without the operation's scope (403 missing_scope), and another tenant's
key (404 on tenant A's objects; an empty list where tenant A's rows would be listed).

The operations come from the generated schema, so an endpoint is covered the day it is added.
Path parameters are filled with objects of tenant A made per parameter name: a new parameter
name fails here until ``path_parameter_objects`` (tests/support/api.py) makes an object for it."""

import re
from dataclasses import dataclass
from typing import Any

import pytest
from django.db.models import Model
from django.urls import resolve
from drf_spectacular.generators import SchemaGenerator

from tenants import services
from tenants.authentication import ANY_KEY, required_scope
from tenants.models import ApiKey
from tests.support.api import key_client, path_parameter_objects

METHODS = ("get", "put", "patch", "post", "delete")
PARAMETER = re.compile(r"\{([^}]+)\}")


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    is_list: bool  # answers {data, has_more, next_cursor}

    @property
    def parameters(self) -> list[str]:
        return PARAMETER.findall(self.path)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _is_list(schema: dict[str, Any], operation: dict[str, Any]) -> bool:
    ok = operation["responses"].get("200", {})
    body: dict[str, Any] = ok.get("content", {}).get("application/json", {}).get("schema", {})
    if "$ref" in body:
        body = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    return {"data", "has_more", "next_cursor"} <= set(body.get("properties", {}))


def _operations() -> list[Operation]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return [
        Operation(method.upper(), path, method == "get" and _is_list(schema, operation))
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


OPERATIONS = _operations()


def _view(operation: Operation) -> Any:
    return resolve(PARAMETER.sub("1", operation.path)).func.cls


def _param(operation: Operation) -> Any:
    """An async view's work runs on the worker pool, whose connections see only committed rows:
    its operations need the transactional database."""
    if getattr(_view(operation), "view_is_async", False):
        return pytest.param(operation, marks=pytest.mark.django_db(transaction=True))
    return operation


def _fill(path: str, objects: dict[str, Model]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in objects:
            pytest.fail(
                f"{path}: no object for the path parameter {{{name}}}; add it to "
                "path_parameter_objects in tests/support/api.py"
            )
        return str(objects[name].pk)

    return PARAMETER.sub(value, path)


def _scope(operation: Operation) -> str:
    scope = required_scope(_view(operation), operation.method)
    assert scope is not None, f"{operation}: the view declares no scope for {operation.method}"
    return scope


def _call(operation: Operation, path: str, raw_key: str | None) -> Any:
    client = key_client(raw_key)
    # Keys, scopes and lookups are checked before a body is read: an empty one does.
    has_body = operation.method in ("POST", "PUT", "PATCH")
    return client.generic(
        operation.method,
        path,
        data="{}" if has_body else "",
        content_type="application/json",
    )


def _assert_error(response: Any, status: int, code: str, where: str) -> None:
    assert response.status_code == status, f"{where}: {response.status_code} {response.content!r}"
    assert response.json()["error"]["code"] == code, f"{where}: {response.content!r}"


def test_every_path_parameter_has_an_object(tenant_a) -> None:
    known = set(path_parameter_objects(tenant_a))
    names = {name for operation in OPERATIONS for name in operation.parameters}
    assert names <= known, f"add objects for {names - known} to path_parameter_objects"


def test_the_matrix_covers_the_api() -> None:
    assert any(str(operation) == "GET /api/v1/tenant" for operation in OPERATIONS)


@pytest.mark.parametrize("operation", [_param(op) for op in OPERATIONS], ids=str)
def test_operation_refuses_what_it_must(operation: Operation, tenant_a, tenant_b) -> None:
    objects = path_parameter_objects(tenant_a)
    path = _fill(operation.path, objects)
    scope = _scope(operation)
    revoked = services.api_key_issue(tenant=tenant_a, name="Revoked", scopes=["admin"])
    services.api_key_revoke(api_key=revoked.api_key)
    others = [s for s in ApiKey.Scope.values if s not in (scope, ApiKey.Scope.ADMIN)]
    lacking = services.api_key_issue(tenant=tenant_a, name="Lacking", scopes=others)
    other_tenant = services.api_key_issue(tenant=tenant_b, name="B", scopes=["admin"])

    _assert_error(_call(operation, path, None), 401, "unauthenticated", f"{operation} no key")
    _assert_error(
        _call(operation, path, revoked.raw_key), 401, "invalid_api_key", f"{operation} revoked"
    )
    if scope == ANY_KEY:
        bare = services.api_key_issue(tenant=tenant_a, name="Bare", scopes=[])
        response = _call(operation, path, bare.raw_key)
        assert 200 <= response.status_code < 300, f"{operation}: any live key may call it"
    else:
        _assert_error(
            _call(operation, path, lacking.raw_key), 403, "missing_scope", f"{operation} scope"
        )
        assert scope in _call(operation, path, lacking.raw_key).json()["error"]["message"]

    response = _call(operation, path, other_tenant.raw_key)
    if operation.parameters:
        # Tenant A's objects do not exist for tenant B's key, whatever it may do.
        _assert_error(response, 404, "not_found", f"{operation} other tenant")
        for name in operation.parameters:
            model = type(objects[name])
            assert model._default_manager.filter(pk=objects[name].pk).exists(), (
                f"{operation}: tenant B's key changed tenant A's {name}"
            )
    elif operation.is_list:
        # Tenant B owns no rows at all: whatever it lists would be tenant A's.
        assert response.status_code == 200, f"{operation}: {response.content!r}"
        assert response.json()["data"] == [], f"{operation}: tenant B sees tenant A's rows"


def test_an_unknown_path_parameter_fails_the_matrix(tenant_a) -> None:
    with pytest.raises(pytest.fail.Exception, match="widget_id"):
        _fill("/api/v1/widgets/{widget_id}", {})


def test_a_list_is_recognised_by_its_page_shape() -> None:
    schema: dict[str, Any] = {
        "components": {
            "schemas": {
                "Page": {"properties": {key: {} for key in ("data", "has_more", "next_cursor")}}
            }
        }
    }
    page = {
        "responses": {
            "200": {
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Page"}}}
            }
        }
    }

    assert _is_list(schema, page)
    assert not _is_list(schema, {"responses": {"200": {"content": {}}}})
