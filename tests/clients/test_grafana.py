"""Specification of GrafanaClient against Grafana's HTTP API (backend-apis.md section 3)."""

from __future__ import annotations

import httpx
import pytest

from lab_stack.clients import GrafanaClient
from lab_stack.errors import NotFound, QueryError

from ._fake import FakeAPI, params


def make(fake: FakeAPI) -> GrafanaClient:
    return GrafanaClient(
        "http://grafana.test:3000", transport=fake.transport, auth=("admin", "admin")
    )


def test_health_and_ready() -> None:
    """health() returns /api/health; ready() is True when the database is ok."""
    fake = FakeAPI().on(
        "GET", "/api/health", json_body={"commit": "abc", "database": "ok", "version": "10.2.2"}
    )
    grafana = make(fake)
    assert grafana.health()["version"] == "10.2.2"
    assert grafana.ready() is True
    assert fake.last.headers["authorization"] == httpx.BasicAuth("admin", "admin")._auth_header


def test_ready_is_false_on_errors() -> None:
    """ready() is False when /api/health fails."""
    assert make(FakeAPI().on("GET", "/api/health", text="down", status=503)).ready() is False


def test_datasources_and_datasource_by_uid() -> None:
    """datasources() lists /api/datasources; datasource(uid) reads /api/datasources/uid/<uid>."""
    ds = {
        "uid": "prom",
        "name": "Prometheus",
        "type": "prometheus",
        "url": "http://prometheus:9090",
    }
    fake = (
        FakeAPI()
        .on("GET", "/api/datasources", json_body=[ds])
        .on("GET", "/api/datasources/uid/prom", json_body=ds)
    )
    grafana = make(fake)
    assert grafana.datasources() == [ds]
    assert grafana.datasource("prom")["type"] == "prometheus"


def test_datasource_health_returns_failures_as_data() -> None:
    """datasource_health() returns Grafana's verdict, including a failing check (HTTP 400)."""
    fake = FakeAPI().on(
        "GET",
        "/api/datasources/uid/loki/health",
        json_body={"status": "ERROR", "message": "connection refused"},
        status=400,
    )
    assert make(fake).datasource_health("loki") == {
        "status": "ERROR",
        "message": "connection refused",
    }


def test_dashboard_and_missing_dashboard() -> None:
    """dashboard(uid) returns dashboard+meta; a missing uid raises NotFound with a hint."""
    fake = FakeAPI().on(
        "GET",
        "/api/dashboards/uid/ml",
        json_body={"dashboard": {"uid": "ml", "panels": []}, "meta": {"provisioned": True}},
    )
    fake.on(
        "GET", "/api/dashboards/uid/nope", json_body={"message": "Dashboard not found"}, status=404
    )
    grafana = make(fake)
    assert grafana.dashboard("ml")["meta"]["provisioned"] is True
    with pytest.raises(
        NotFound,
        match=r"Grafana has no dashboard uid 'nope' \(HTTP 404\).*: Dashboard not found"
        r".*Hint: no dashboard uid 'nope' is provisioned",
    ):
        grafana.dashboard("nope")


def test_search_params() -> None:
    """search() sends query, type=dash-db, repeated tag and limit to /api/search."""
    fake = FakeAPI().on("GET", "/api/search", json_body=[{"uid": "ml", "type": "dash-db"}])
    assert make(fake).search("model", tags=["ml", "slo"], limit=10) == [
        {"uid": "ml", "type": "dash-db"}
    ]
    assert params(fake.last) == {
        "query": ["model"],
        "type": ["dash-db"],
        "tag": ["ml", "slo"],
        "limit": ["10"],
    }


def test_unauthorized_hints_at_credentials() -> None:
    """A 401 raises QueryError suggesting the lab's credentials."""
    fake = FakeAPI().on(
        "GET", "/api/datasources", json_body={"message": "Unauthorized"}, status=401
    )
    with pytest.raises(
        QueryError, match=r"HTTP 401 .*: Unauthorized.*Hint: Grafana refused the credentials"
    ):
        make(fake).datasources()
