"""Specification of PrometheusClient against the Prometheus HTTP API's paths and shapes."""

from __future__ import annotations

import threading

import httpx
import pytest

from lab_stack.clients import PrometheusClient, RangeSeries, Sample, range_series
from lab_stack.errors import LabError, QueryError

from ._fake import FakeAPI, form, params, prom_ok

VECTOR = prom_ok(
    {
        "resultType": "vector",
        "result": [{"metric": {"__name__": "up", "job": "node"}, "value": [1700000000.5, "1"]}],
    }
)
BAD_DATA = {
    "status": "error",
    "errorType": "bad_data",
    "error": 'invalid parameter "query": 1:4: parse error: unexpected end of input',
}


def make(fake: FakeAPI) -> PrometheusClient:
    return PrometheusClient("http://prom.test:9090/", transport=fake.transport)


def test_query_posts_form_to_api_v1_query_and_returns_data() -> None:
    """query() POSTs query and time as a form to /api/v1/query and returns the ``data`` object."""
    fake = FakeAPI().on("POST", "/api/v1/query", json_body=VECTOR)
    data = make(fake).query('up{job="node"}', time=1700000000)
    assert form(fake.last) == {"query": ['up{job="node"}'], "time": ["1700000000.000"]}
    assert data["resultType"] == "vector"
    assert data["result"][0]["metric"]["job"] == "node"


def test_query_samples_and_query_value_decode_floats() -> None:
    """query_samples() gives typed samples; query_value() the single float."""
    fake = FakeAPI().on("POST", "/api/v1/query", json_body=VECTOR)
    prom = make(fake)
    assert prom.query_samples("up") == [
        Sample({"__name__": "up", "job": "node"}, 1.0, 1700000000.5)
    ]
    assert prom.query_value("up") == 1.0
    assert "time" not in form(fake.last)


def test_query_value_of_a_scalar_and_of_nothing() -> None:
    """A scalar result is its value; an empty vector is None."""
    fake = FakeAPI().on(
        "POST", "/api/v1/query", json_body=prom_ok({"resultType": "scalar", "result": [1.0, "2"]})
    )
    assert make(fake).query_value("1+1") == 2.0
    fake.on("POST", "/api/v1/query", json_body=prom_ok({"resultType": "vector", "result": []}))
    assert make(fake).query_value("absent_metric") is None


def test_query_value_refuses_several_series() -> None:
    """query_value() on a multi-series result raises QueryError suggesting an aggregation."""
    two = prom_ok(
        {
            "resultType": "vector",
            "result": [
                {"metric": {"job": "a"}, "value": [1, "1"]},
                {"metric": {"job": "b"}, "value": [1, "0"]},
            ],
        }
    )
    fake = FakeAPI().on("POST", "/api/v1/query", json_body=two)
    with pytest.raises(QueryError, match=r"at most one series from 'up', got 2.*Hint: aggregate"):
        make(fake).query_value("up")


def test_bad_promql_is_query_error_with_error_type_text_url_and_hint() -> None:
    """A 400 bad_data raises QueryError with errorType, error, URL, query and a PromQL hint."""
    fake = FakeAPI().on("POST", "/api/v1/query", json_body=BAD_DATA, status=400)
    with pytest.raises(QueryError) as info:
        make(fake).query("up{")
    message = str(info.value)
    assert message.startswith(
        "Prometheus answered HTTP 400 for POST http://prom.test:9090/api/v1/query "
        "with query 'up{': bad_data: invalid parameter \"query\": 1:4: parse error: "
        "unexpected end of input. Hint: check the PromQL syntax"
    )
    assert info.value.status == 400


def test_execution_error_422_hints_at_narrowing_the_query() -> None:
    """A 422 execution error suggests narrowing the range or aggregating."""
    err = {
        "status": "error",
        "errorType": "execution",
        "error": "query processing would load too many samples",
    }
    fake = FakeAPI().on("POST", "/api/v1/query_range", json_body=err, status=422)
    with pytest.raises(
        QueryError, match=r"execution: query processing.*Hint: the query parsed but"
    ):
        make(fake).query_range("up", start=0, end=100, step=1)


def test_error_envelope_with_200_is_still_an_error() -> None:
    """An error envelope is an error even when the HTTP status is 200."""
    fake = FakeAPI().on("POST", "/api/v1/query", json_body=BAD_DATA)
    with pytest.raises(QueryError, match="bad_data"):
        make(fake).query("up{")


def test_query_range_sends_start_end_step_and_decodes_a_matrix() -> None:
    """query_range() POSTs start, end and step; range_series() decodes the matrix."""
    matrix = prom_ok(
        {
            "resultType": "matrix",
            "result": [{"metric": {"job": "x"}, "values": [[10, "1"], [20, "3.5"]]}],
        }
    )
    fake = FakeAPI().on("POST", "/api/v1/query_range", json_body=matrix)
    data = make(fake).query_range("rate(x[1m])", start=10, end=20, step=10)
    assert form(fake.last) == {
        "query": ["rate(x[1m])"],
        "start": ["10.000"],
        "end": ["20.000"],
        "step": ["10s"],
    }
    series = range_series(data)
    assert series == [RangeSeries({"job": "x"}, ((10.0, 1.0), (20.0, 3.5)))]
    assert series[0].values == [1.0, 3.5]


def test_series_repeats_match_and_passes_the_range() -> None:
    """series() sends every selector as a ``match[]`` parameter."""
    fake = FakeAPI().on(
        "GET", "/api/v1/series", json_body=prom_ok([{"__name__": "up", "job": "a"}])
    )
    found = make(fake).series(["up", 'process_cpu_seconds_total{job="a"}'], start=1, end=2)
    assert params(fake.last) == {
        "match[]": ["up", 'process_cpu_seconds_total{job="a"}'],
        "start": ["1.000"],
        "end": ["2.000"],
    }
    assert found == [{"__name__": "up", "job": "a"}]


def test_labels_and_label_values_paths() -> None:
    """labels() hits /api/v1/labels; label_values(name) hits /api/v1/label/<name>/values."""
    fake = FakeAPI().on("GET", "/api/v1/label/job/values", json_body=prom_ok(["a", "b"]))
    fake.on("GET", "/api/v1/labels", json_body=prom_ok(["__name__", "job"]))
    prom = make(fake)
    assert prom.label_values("job") == ["a", "b"]
    assert params(fake.last) == {}
    assert prom.labels(match=["up"]) == ["__name__", "job"]
    assert params(fake.last) == {"match[]": ["up"]}


TARGETS = prom_ok(
    {
        "activeTargets": [
            {
                "discoveredLabels": {"__address__": "127.0.0.1:9100"},
                "labels": {"instance": "127.0.0.1:9100", "job": "node"},
                "scrapePool": "node",
                "scrapeUrl": "http://127.0.0.1:9100/metrics",
                "globalUrl": "http://host:9100/metrics",
                "lastError": "",
                "lastScrape": "2024-01-01T00:00:00Z",
                "lastScrapeDuration": 0.0123,
                "health": "up",
            },
            {
                "discoveredLabels": {},
                "labels": {"instance": "127.0.0.1:8000", "job": "ml"},
                "scrapePool": "ml",
                "scrapeUrl": "http://127.0.0.1:8000/metrics",
                "lastError": 'Get "http://127.0.0.1:8000/metrics": dial tcp: connection refused',
                "lastScrape": "2024-01-01T00:00:00Z",
                "lastScrapeDuration": 0.001,
                "health": "down",
            },
        ],
        "droppedTargets": [{"discoveredLabels": {"job": "gone"}}],
    }
)


def test_targets_decode_health_last_error_and_filter_by_job() -> None:
    """targets() sends state= and returns typed targets with health and lastError."""
    fake = FakeAPI().on("GET", "/api/v1/targets", json_body=TARGETS)
    prom = make(fake)
    active = prom.targets()
    assert params(fake.last) == {"state": ["active"]}
    assert [(t.job, t.health, t.up) for t in active] == [
        ("node", "up", True),
        ("ml", "down", False),
    ]
    (ml,) = prom.targets(job="ml")
    assert "connection refused" in ml.last_error
    assert ml.scrape_url == "http://127.0.0.1:8000/metrics"
    assert ml.labels["instance"] == "127.0.0.1:8000"
    assert len(prom.targets("any")) == 3
    assert params(fake.last) == {"state": ["any"]}
    (dropped,) = prom.targets("dropped")
    assert dropped.health == "unknown" and dropped.discovered_labels == {"job": "gone"}


def test_rules_alerts_config_flags_tsdb_metadata() -> None:
    """The status and rule endpoints are read from their documented paths and unwrapped."""
    group = {
        "name": "g",
        "file": "r.yml",
        "rules": [{"name": "A", "type": "alerting", "health": "ok"}],
    }
    fake = (
        FakeAPI()
        .on("GET", "/api/v1/rules", json_body=prom_ok({"groups": [group]}))
        .on(
            "GET",
            "/api/v1/alerts",
            json_body=prom_ok({"alerts": [{"labels": {"alertname": "A"}, "state": "firing"}]}),
        )
        .on(
            "GET",
            "/api/v1/status/config",
            json_body=prom_ok({"yaml": "global:\n  scrape_interval: 1s\n"}),
        )
        .on("GET", "/api/v1/status/flags", json_body=prom_ok({"web.enable-lifecycle": "true"}))
        .on("GET", "/api/v1/status/tsdb", json_body=prom_ok({"headStats": {"numSeries": 42}}))
        .on(
            "GET",
            "/api/v1/metadata",
            json_body=prom_ok({"up": [{"type": "gauge", "help": "h", "unit": ""}]}),
        )
    )
    prom = make(fake)
    assert prom.rules(type="alert") == [group]
    assert params(fake.last) == {"type": ["alert"]}
    assert prom.alerts()[0]["state"] == "firing"
    assert "scrape_interval: 1s" in prom.config()
    assert prom.flags()["web.enable-lifecycle"] == "true"
    assert prom.tsdb_status()["headStats"]["numSeries"] == 42
    assert prom.metadata("up")["up"][0]["type"] == "gauge"
    assert params(fake.last) == {"metric": ["up"]}


def test_reload_posts_to_lifecycle_endpoint() -> None:
    """reload() POSTs /-/reload."""
    fake = FakeAPI().on("POST", "/-/reload")
    make(fake).reload()
    assert (fake.last.method, fake.last.url.path) == ("POST", "/-/reload")


def test_reload_without_lifecycle_flag_says_which_flag() -> None:
    """A 403 'Lifecycle API is not enabled.' points at --web.enable-lifecycle."""
    fake = FakeAPI().on("POST", "/-/reload", text="Lifecycle API is not enabled.", status=403)
    with pytest.raises(
        QueryError, match=r"HTTP 403 .*: Lifecycle API is not enabled\..*--web.enable-lifecycle"
    ):
        make(fake).reload()


def test_failed_reload_points_at_promtool() -> None:
    """A 500 'failed to reload config' suggests promtool check config."""
    fake = FakeAPI().on(
        "POST", "/-/reload", text="failed to reload config: couldn't load configuration", status=500
    )
    with pytest.raises(
        QueryError, match=r"failed to reload config.*Hint: run `promtool check config`"
    ):
        make(fake).reload()


def test_ready_true_on_200_false_on_503() -> None:
    """ready() maps 200 to True and 503 ('Service Unavailable') to False."""
    fake = FakeAPI().on("GET", "/-/ready", text="Prometheus Server is Ready.\n")
    assert make(fake).ready() is True
    fake.on("GET", "/-/ready", text="Service Unavailable", status=503)
    assert make(fake).ready() is False


def test_wait_for_polls_until_the_predicate_holds() -> None:
    """wait_for() re-queries until the predicate holds and returns those samples."""
    answers = iter(["0", "0", "1"])
    lock = threading.Lock()

    def reply(request: httpx.Request) -> httpx.Response:
        with lock:
            value = next(answers)
        return httpx.Response(
            200,
            json=prom_ok({"resultType": "vector", "result": [{"metric": {}, "value": [1, value]}]}),
        )

    fake = FakeAPI().on("POST", "/api/v1/query", reply=reply)
    found = make(fake).wait_for("up", lambda s: s[0].value == 1, timeout=5, interval=0.01)
    assert found[0].value == 1.0
    assert len(fake.requests) == 3


def test_wait_for_timeout_shows_the_last_result() -> None:
    """On timeout wait_for() raises LabError with the query and the last result seen."""
    fake = FakeAPI().on("POST", "/api/v1/query", json_body=VECTOR)
    with pytest.raises(
        LabError, match=r"the PromQL 'up' at http://prom.test:9090 never.*job': 'node'\}=1.*Hint:"
    ):
        make(fake).wait_for("up", lambda s: False, timeout=0.1, interval=0.02)


def test_wait_for_does_not_wait_on_a_rejected_query() -> None:
    """A syntax error is raised at once by wait_for(), not retried until the timeout."""
    fake = FakeAPI().on("POST", "/api/v1/query", json_body=BAD_DATA, status=400)
    with pytest.raises(QueryError):
        make(fake).wait_for("up{", timeout=30)
    assert len(fake.requests) == 1
