"""Specification of the shared client plumbing: construction, error mapping, messages, decoding."""

from __future__ import annotations

import httpx
import pytest

from lab_stack.clients import PrometheusClient, TempoClient
from lab_stack.clients._http import BaseClient, format_duration, poll, unix_seconds
from lab_stack.errors import BackendUnreachable, ClientError, LabError, NotFound, QueryError

from ._fake import FakeAPI, closed_port_url, params, prom_ok


def test_connection_refused_is_backend_unreachable_with_url_and_hint() -> None:
    """A real connection refused on a closed local port raises BackendUnreachable naming it."""
    url = closed_port_url()
    with (
        PrometheusClient(url, timeout=2) as prom,
        pytest.raises(
            BackendUnreachable, match=r"Hint: is the stack running\? `lab status`"
        ) as info,
    ):
        prom.query("up")
    message = str(info.value)
    assert f"{url}/api/v1/query" in message
    assert "'up'" in message
    assert "ConnectError" in message
    assert "`lab logs prometheus`" in message
    assert info.value.url == f"{url}/api/v1/query"
    assert isinstance(info.value, ClientError)
    assert isinstance(info.value.__cause__, httpx.ConnectError)


def test_timeout_is_backend_unreachable_naming_the_timeout() -> None:
    """A read timeout raises BackendUnreachable that says how long it waited."""

    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    fake = FakeAPI().on("POST", "/api/v1/query", reply=hang)
    prom = PrometheusClient("http://prom.test", transport=fake.transport, timeout=1.5)
    with pytest.raises(
        BackendUnreachable,
        match=r"did not answer within 1.5 s for POST .*: ReadTimeout: timed out\. Hint:",
    ):
        prom.query("up")


def test_ready_is_false_when_nothing_listens() -> None:
    """ready() never raises: a closed port means False."""
    assert PrometheusClient(closed_port_url(), timeout=2).ready() is False


def test_server_error_is_query_error_with_status_body_and_hint() -> None:
    """A 5xx raises QueryError with the status, the backend's text and a logs hint."""
    fake = FakeAPI().on("GET", "/api/v1/status/flags", text="boom: disk full", status=500)
    prom = PrometheusClient("http://prom.test", transport=fake.transport)
    with pytest.raises(
        QueryError, match=r"HTTP 500 .*: boom: disk full.*Hint: .*`lab logs prometheus`"
    ) as info:
        prom.flags()
    assert info.value.status == 500
    assert "http://prom.test/api/v1/status/flags" in str(info.value)


def test_unknown_endpoint_404_is_query_error_not_not_found() -> None:
    """A 404 on an endpoint (not an object) is a QueryError suggesting the URL is wrong."""
    fake = FakeAPI()
    prom = PrometheusClient("http://prom.test", transport=fake.transport)
    with pytest.raises(QueryError, match=r"HTTP 404.*Hint: this URL has no such endpoint") as info:
        prom.flags()
    assert not isinstance(info.value, NotFound)


def test_404_of_a_named_object_is_not_found() -> None:
    """A 404 for an object the caller named raises NotFound, a ClientError."""
    fake = FakeAPI().on("GET", "/api/traces/abc", text="trace not found", status=404)
    tempo = TempoClient("http://tempo.test", transport=fake.transport)
    with pytest.raises(NotFound, match=r"Tempo has no trace 'abc' \(HTTP 404\).*: trace not found"):
        tempo.trace("abc")


def test_non_json_success_body_is_query_error() -> None:
    """A 200 whose body is not JSON raises QueryError quoting the body and asking for the URL."""
    fake = FakeAPI().on("GET", "/api/v1/status/flags", text="<html>grafana</html>")
    prom = PrometheusClient("http://prom.test", transport=fake.transport)
    with pytest.raises(
        QueryError,
        match=r"not JSON for GET .*: '<html>grafana</html>'\. Hint: is http://prom.test really",
    ):
        prom.flags()


def test_success_envelope_without_data_is_query_error() -> None:
    """A success envelope that lacks ``data`` raises QueryError rather than returning None."""
    fake = FakeAPI().on("GET", "/api/v1/status/flags", json_body={"status": "success"})
    prom = PrometheusClient("http://prom.test", transport=fake.transport)
    with pytest.raises(QueryError, match="without a 'data' field"):
        prom.flags()


def test_injected_client_supplies_base_url_and_is_not_closed() -> None:
    """A borrowed httpx.Client provides the base URL and stays open after close()."""
    fake = FakeAPI().on("GET", "/api/v1/status/flags", json_body=prom_ok({"a": "b"}))
    http = httpx.Client(base_url="http://prom.test/", transport=fake.transport)
    prom = PrometheusClient(client=http)
    assert prom.base_url == "http://prom.test"
    assert prom.flags() == {"a": "b"}
    prom.close()
    assert not http.is_closed
    http.close()


def test_owned_client_is_closed_by_the_context_manager() -> None:
    """A client the object built itself is closed on leaving ``with``."""
    with PrometheusClient("http://prom.test", transport=FakeAPI().transport) as prom:
        pass
    assert prom._client.is_closed


def test_client_and_transport_together_are_refused() -> None:
    """Passing both client= and transport= is a programming error (ValueError)."""
    with pytest.raises(ValueError, match="either client= or transport="):
        PrometheusClient("http://x", client=httpx.Client(), transport=FakeAPI().transport)


def test_missing_base_url_is_refused_with_a_hint() -> None:
    """Without a base URL the constructor says where to get one."""
    with pytest.raises(ValueError, match=r"needs a base_url.*connect\(\)\.url\('prometheus'\)"):
        PrometheusClient()


def test_params_drop_none_repeat_lists_and_spell_booleans() -> None:
    """Query parameters: None is dropped, lists repeat the key, booleans are true/false."""
    fake = FakeAPI().on("GET", "/x", json_body={})
    client = BaseClient("http://b.test", transport=fake.transport)
    client._get_json("/x", params={"a": None, "m[]": ["1", "2"], "t": True, "f": False, "n": 3})
    assert params(fake.last) == {"m[]": ["1", "2"], "t": ["true"], "f": ["false"], "n": ["3"]}


def test_error_detail_is_taken_from_json_message_and_truncated() -> None:
    """JSON ``message`` bodies are quoted; very long bodies are cut."""
    fake = FakeAPI().on("GET", "/m", json_body={"message": "bad thing"}, status=400)
    fake.on("GET", "/long", text="x" * 5000, status=400)
    client = BaseClient("http://b.test", transport=fake.transport)
    with pytest.raises(QueryError, match=r"HTTP 400 .*: bad thing"):
        client._get_json("/m")
    with pytest.raises(QueryError) as info:
        client._get_json("/long")
    assert len(str(info.value)) < 1000
    assert "x…" in str(info.value)


def test_time_and_duration_formatting() -> None:
    """Times become unix seconds, durations Prometheus/Go text; strings pass unchanged."""
    from datetime import UTC, datetime, timedelta

    assert unix_seconds(1700000000) == "1700000000.000"
    assert unix_seconds(datetime(2024, 1, 1, tzinfo=UTC)) == "1704067200.000"
    assert unix_seconds("2024-01-01T00:00:00Z") == "2024-01-01T00:00:00Z"
    assert format_duration(15) == "15s"
    assert format_duration(0.25) == "250ms"
    assert format_duration(timedelta(minutes=5)) == "300s"
    assert format_duration("1m") == "1m"


def test_poll_retries_unreachable_and_reports_on_timeout() -> None:
    """poll() retries BackendUnreachable; on timeout it raises LabError chaining the failure."""
    calls: list[int] = []

    def fetch() -> int:
        calls.append(1)
        raise BackendUnreachable("down")

    with pytest.raises(
        LabError, match=r"Waited 0.2 s: still nothing.*The last attempt failed: down"
    ) as info:
        poll(
            fetch,
            lambda v: True,
            timeout=0.2,
            interval=0.05,
            describe=lambda last: "still nothing.",
        )
    assert len(calls) >= 2
    assert isinstance(info.value.__cause__, BackendUnreachable)


def test_poll_retries_503_but_raises_other_query_errors_at_once() -> None:
    """poll() treats a 503 as "not ready yet" and any other QueryError as final."""
    answers: list[Exception | int] = [QueryError("starting", status=503), 7]

    def fetch() -> int:
        item = answers.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    assert poll(fetch, lambda v: v == 7, timeout=5, interval=0.01, describe=str) == 7

    def rejected() -> int:
        raise QueryError("bad", status=400)

    with pytest.raises(QueryError, match="bad"):
        poll(rejected, lambda v: True, timeout=5, interval=0.01, describe=str)
