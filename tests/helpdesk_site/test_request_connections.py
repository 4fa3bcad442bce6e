"""A sync view served over ASGI runs in a thread of its request's own: its database connection
is closed when the request ends, however long connections may otherwise persist."""

import urllib.request

import pytest
from django.db import connection

from tenants import services


def _sessions(cursor) -> int:
    cursor.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid()"
    )
    return int(cursor.fetchone()[0])


@pytest.mark.django_db(transaction=True)
def test_api_requests_over_asgi_leave_no_connection_open(
    postgres, live_asgi, tenant_a, monkeypatch
) -> None:
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 60)  # as in production
    raw_key = services.api_key_issue(tenant=tenant_a, name="Probe", scopes=["admin"]).raw_key
    request = urllib.request.Request(  # noqa: S310 (the test's own server)
        f"{live_asgi.url}/api/v1/tenant", headers={"Authorization": f"Bearer {raw_key}"}
    )
    with connection.cursor() as cursor:
        before = _sessions(cursor)
    held = []
    for _ in range(20):
        answer = urllib.request.urlopen(request)  # noqa: S310 (the test's own server)
        held.append(answer)  # the request's thread is gone once it is answered
        assert answer.status == 200

    with connection.cursor() as cursor:
        assert _sessions(cursor) <= before + 1  # the server's own shared database thread
