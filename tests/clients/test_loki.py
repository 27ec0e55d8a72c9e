"""Specification of LokiClient against Loki 2.9's /loki/api/v1 paths, parameters and shapes."""

from __future__ import annotations

import pytest

from lab_stack.clients import LogEntry, LokiClient, entries, lines, samples
from lab_stack.clients.loki import nanoseconds
from lab_stack.errors import QueryError

from ._fake import FakeAPI, body, params, prom_ok

STREAMS = prom_ok(
    {
        "resultType": "streams",
        "result": [
            {
                "stream": {"app": "ml", "level": "error"},
                "values": [
                    ["1700000000000000002", "second", {"trace_id": "abc"}],
                    ["1700000000000000001", "first"],
                ],
            }
        ],
        "stats": {"summary": {}},
    }
)


def make(fake: FakeAPI) -> LokiClient:
    return LokiClient("http://loki.test:3100", transport=fake.transport)


def test_push_sends_v1_json_with_string_nanoseconds() -> None:
    """push() POSTs the v1 shape; numeric seconds become nanosecond strings, metadata passes."""
    fake = FakeAPI().on("POST", "/loki/api/v1/push", status=204)
    make(fake).push(
        [
            {
                "stream": {"app": "ml"},
                "values": [[1700000000.5, "hello"], ["17", "raw", {"trace_id": "t"}]],
            }
        ]
    )
    assert fake.last.headers["content-type"] == "application/json"
    assert body(fake.last) == {
        "streams": [
            {
                "stream": {"app": "ml"},
                "values": [["1700000000500000000", "hello"], ["17", "raw", {"trace_id": "t"}]],
            }
        ]
    }


def test_push_lines_spaces_timestamps_by_one_nanosecond() -> None:
    """push_lines() writes lines to one stream at consecutive nanoseconds from the timestamp."""
    fake = FakeAPI().on("POST", "/loki/api/v1/push", status=204)
    make(fake).push_lines({"app": "ml"}, ["a", "b"], timestamp=10)
    assert body(fake.last)["streams"][0]["values"] == [["10000000000", "a"], ["10000000001", "b"]]


def test_rejected_push_quotes_lokis_plain_text() -> None:
    """A 400 push raises QueryError with Loki's text and the push-body hint."""
    fake = FakeAPI().on(
        "POST",
        "/loki/api/v1/push",
        text="error at least one label pair is required per stream\n",
        status=400,
    )
    with pytest.raises(
        QueryError, match=r"HTTP 400 .*: error at least one label pair.*Hint: check the push body"
    ):
        make(fake).push([{"stream": {}, "values": [["1", "x"]]}])


def test_query_params_and_stream_decoding() -> None:
    """query() sends time in ns, limit and direction; lines()/entries() decode streams in order."""
    fake = FakeAPI().on("GET", "/loki/api/v1/query", json_body=STREAMS)
    data = make(fake).query('{app="ml"}', time=1700000000, limit=10, direction="forward")
    assert params(fake.last) == {
        "query": ['{app="ml"}'],
        "time": ["1700000000000000000"],
        "limit": ["10"],
        "direction": ["forward"],
    }
    assert lines(data) == ["second", "first"]
    assert entries(data)[0] == LogEntry(
        1700000000000000002, "second", {"app": "ml", "level": "error"}, {"trace_id": "abc"}
    )
    assert entries(data)[1].metadata == {}


def test_query_range_params_and_matrix() -> None:
    """query_range() sends start/end in ns and step; a metric query decodes with samples helpers."""
    matrix = prom_ok(
        {
            "resultType": "matrix",
            "result": [{"metric": {"app": "ml"}, "values": [[1700000000, "3"]]}],
        }
    )
    fake = FakeAPI().on("GET", "/loki/api/v1/query_range", json_body=matrix)
    data = make(fake).query_range(
        'count_over_time({app="ml"}[1m])', start=1700000000, end=1700000060.25, step=15
    )
    assert params(fake.last) == {
        "query": ['count_over_time({app="ml"}[1m])'],
        "start": ["1700000000000000000"],
        "end": ["1700000060250000000"],
        "step": ["15s"],
    }
    assert lines(data) == []
    with pytest.raises(QueryError, match="resultType='matrix'"):
        samples(data)


def test_query_range_leaves_defaults_to_loki() -> None:
    """Parameters not given are not sent, so Loki's own defaults apply."""
    fake = FakeAPI().on("GET", "/loki/api/v1/query_range", json_body=STREAMS)
    make(fake).query_range('{app="ml"}')
    assert params(fake.last) == {"query": ['{app="ml"}']}


def test_bad_logql_is_query_error_with_hint() -> None:
    """A 400 parse error raises QueryError quoting Loki, the query and a LogQL hint."""
    fake = FakeAPI().on(
        "GET",
        "/loki/api/v1/query_range",
        text="parse error : queries require at least one regexp or equality matcher that "
        "does not have an empty-compatible value",
        status=400,
    )
    with pytest.raises(QueryError) as info:
        make(fake).query_range('{app=~".*"}')
    message = str(info.value)
    assert message.startswith(
        "Loki answered HTTP 400 for GET http://loki.test:3100/loki/api/v1/query_range "
        "with query '{app=~\".*\"}': parse error : queries require at least one regexp"
    )
    assert "empty-compatible value. Hint: check the LogQL syntax" in message


def test_unsupported_feature_of_embedded_loki_hints_at_docker() -> None:
    """The embedded Loki's 'not supported' answer points at the docker stack."""
    fake = FakeAPI().on(
        "GET",
        "/loki/api/v1/query",
        text="label_replace is not supported by the embedded Loki; "
        "run the docker stack for full LogQL",
        status=400,
    )
    with pytest.raises(QueryError, match=r"Hint: rewrite the query .* or run the docker stack"):
        make(fake).query("label_replace(x)")


def test_labels_label_values_and_series() -> None:
    """labels(), label_values() and series() use their paths; a missing ``data`` means empty."""
    fake = (
        FakeAPI()
        .on("GET", "/loki/api/v1/labels", json_body={"status": "success"})
        .on("GET", "/loki/api/v1/label/app/values", json_body=prom_ok(["ml", "web"]))
        .on("GET", "/loki/api/v1/series", json_body=prom_ok([{"app": "ml"}]))
    )
    loki = make(fake)
    assert loki.labels(start=1) == []
    assert params(fake.last) == {"start": ["1000000000"]}
    assert loki.label_values("app") == ["ml", "web"]
    assert loki.series(['{app="ml"}', '{app="web"}']) == [{"app": "ml"}]
    assert params(fake.last) == {"match[]": ['{app="ml"}', '{app="web"}']}


def test_ready_and_nanoseconds() -> None:
    """ready() reads /ready; nanoseconds() converts seconds and datetimes, passes strings."""
    from datetime import UTC, datetime

    assert make(FakeAPI().on("GET", "/ready", text="ready\n")).ready() is True
    assert nanoseconds(datetime(2024, 1, 1, tzinfo=UTC)) == "1704067200000000000"
    assert nanoseconds("now") == "now"
