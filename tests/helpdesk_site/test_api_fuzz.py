"""Property-based requests against a live server: every operation of the served schema gets
requests generated from its own description (schemathesis), and must answer each without a
server error and with a response its schema describes. New endpoints are included the day they
appear in the schema."""

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tenants import services
from tests.support.api import path_parameter_objects
from tests.support.factories import (
    CannedResponseFactory,
    ConversationFactory,
    KnowledgeEntryFactory,
    TenantFactory,
    TicketFactory,
)

# Bounded so that the whole API is fuzzed in about a minute on a small CI machine.
EXAMPLES_PER_OPERATION = 8
CHECKS = [not_a_server_error, response_schema_conformance]


def _seeded_tenant() -> tuple[dict[str, int], str]:
    """A tenant with a few rows of each kind, and an admin key that is never rate limited;
    the ids of its objects per path parameter name."""
    tenant = TenantFactory(name="Fuzz", slug="fuzz", api_rate_limit="100000/60")
    for _ in range(3):
        ConversationFactory(tenant=tenant)
        TicketFactory(tenant=tenant)
        KnowledgeEntryFactory(tenant=tenant)
        CannedResponseFactory(tenant=tenant)
    ids = {name: row.pk for name, row in path_parameter_objects(tenant).items()}
    issued = services.api_key_issue(tenant=tenant, name="Fuzz", scopes=["admin"])
    return ids, issued.raw_key


@pytest.mark.django_db(transaction=True)
def test_every_operation_answers_generated_requests_as_documented(live_asgi) -> None:
    ids, raw_key = _seeded_tenant()
    schema = schemathesis.openapi.from_url(f"{live_asgi.url}/api/v1/schema?format=json")
    headers = {"Authorization": f"Bearer {raw_key}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert any(op.label == "GET /api/v1/tenant" for op in operations)
    answered: dict[str, set[int]] = {}

    for operation in operations:

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(), existing=st.booleans())
        def fuzz(case: Any, existing: bool) -> None:
            if existing and case.path_parameters:
                # Half the requests name objects that exist, so that more than 404 is tested.
                for name in case.path_parameters:
                    case.path_parameters[name] = ids.get(name, case.path_parameters[name])
            response = case.call_and_validate(
                base_url=live_asgi.url, headers=headers, checks=CHECKS, timeout=30
            )
            answered.setdefault(case.operation.label, set()).add(response.status_code)

        fuzz()

    # The key worked: every operation answered something other than a refusal of the key.
    for label, statuses in answered.items():
        assert statuses - {401, 403, 429}, f"{label}: only {statuses}"
