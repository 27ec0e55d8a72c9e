"""The embedded Loki as a process: real clients, protobuf, durability, hostile input, lifecycle."""

from __future__ import annotations

import gzip
import json
import logging
import time
import uuid
import zlib
from typing import TYPE_CHECKING, Any

import cramjam
import httpx
import logging_loki
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab_stack.embedded.loki.push import MAX_BODY_BYTES, encode_push_proto

if TYPE_CHECKING:  # the fixtures' type; conftest modules are not imported by name
    from tests.embedded.loki.conftest import LokiProcess

NS = 1_000_000_000


def _lines(url: str, selector: str, **params: Any) -> list[tuple[dict[str, str], list[Any]]]:
    now = time.time_ns()
    p = {"query": selector, "start": str(now - 3600 * NS), "end": str(now + NS), "limit": 5000}
    r = httpx.get(f"{url}/loki/api/v1/query_range", params={**p, **params})
    assert r.status_code == 200, r.text
    return [(s["stream"], s["values"]) for s in r.json()["data"]["result"]]


@pytest.mark.parametrize("version", ["0", "1"])
def test_python_logging_loki_emitters(loki: LokiProcess, version: str) -> None:
    """python-logging-loki's legacy (v0) and v1 emitters both land their lines."""
    tag = uuid.uuid4().hex
    url = loki.url + ("/api/prom/push" if version == "0" else "/loki/api/v1/push")
    handler = logging_loki.LokiHandler(url=url, tags={"test": tag}, version=version)
    logger = logging.getLogger(f"t{tag}")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for i in range(5):
            logger.warning("hello %d", i)
    finally:
        logger.removeHandler(handler)
        handler.emitter.close()
    streams = _lines(loki.url, f'{{test="{tag}"}}')
    assert sorted(v[1] for _, vs in streams for v in vs) == [f"hello {i}" for i in range(5)]
    assert all(s["severity"] == "warning" for s, _ in streams)


def test_protobuf_snappy_push_with_structured_metadata(loki: LokiProcess) -> None:
    """A Promtail-style protobuf + raw snappy body is accepted, metadata included."""
    tag = uuid.uuid4().hex
    now = time.time_ns()
    body = encode_push_proto(
        [
            (
                f'{{test="{tag}", job="promtail"}}',
                [(now - 2 * NS, "a", None), (now - NS, "b", {"trace_id": "abc"})],
            )
        ]
    )
    r = httpx.post(
        f"{loki.url}/loki/api/v1/push",
        content=body,
        headers={"Content-Type": "application/x-protobuf", "User-Agent": "promtail/2.9.3"},
    )
    assert r.status_code == 204, r.text
    streams = dict(
        (json.dumps(s, sort_keys=True), v) for s, v in _lines(loki.url, f'{{test="{tag}"}}')
    )
    plain = json.dumps({"job": "promtail", "test": tag}, sort_keys=True)
    with_sm = json.dumps({"job": "promtail", "test": tag, "trace_id": "abc"}, sort_keys=True)
    assert streams[plain] == [[str(now - 2 * NS), "a"]]
    assert streams[with_sm] == [[str(now - NS), "b", {"trace_id": "abc"}]]
    filtered = _lines(loki.url, f'{{test="{tag}"}} | trace_id="abc"')
    assert [v[1] for _, vs in filtered for v in vs] == ["b"]


def test_deflate_and_v1_metadata_push(loki: LokiProcess) -> None:
    """Deflate bodies (zlib or raw) and JSON structured metadata are accepted."""
    tag = uuid.uuid4().hex
    now = time.time_ns()
    doc = {"streams": [{"stream": {"test": tag}, "values": [[str(now), "x", {"user": "u1"}]]}]}
    raw = json.dumps(doc).encode()
    for body in (zlib.compress(raw), zlib.compress(raw)[2:-4]):
        r = httpx.post(
            f"{loki.url}/loki/api/v1/push",
            content=body,
            headers={"Content-Type": "application/json", "Content-Encoding": "deflate"},
        )
        assert r.status_code == 204, r.text
    [(labels, values)] = _lines(loki.url, f'{{test="{tag}"}}')
    assert labels == {"test": tag, "user": "u1"}
    assert values == [[str(now), "x", {"user": "u1"}]]  # the second push was a duplicate


def test_kill_9_loses_nothing_acknowledged(loki_factory: LokiProcess) -> None:
    """Every push acknowledged with 204 before a SIGKILL is there after a restart."""
    loki_factory.start()
    now = time.time_ns()
    sent = []
    for batch in range(20):
        values = [[str(now - (1000 - batch * 10 - i) * NS), f"line {batch}-{i}"] for i in range(10)]
        r = httpx.post(
            f"{loki_factory.url}/loki/api/v1/push",
            json={"streams": [{"stream": {"job": "durable"}, "values": values}]},
        )
        assert r.status_code == 204
        sent += [v[1] for v in values]
    loki_factory.kill9()
    loki_factory.start()
    got = [
        v[1]
        for _, vs in _lines(loki_factory.url, '{job="durable"}', direction="forward")
        for v in vs
    ]
    assert got == sent


def test_sigterm_exits_cleanly(loki_factory: LokiProcess) -> None:
    """SIGTERM stops the process with exit status 0."""
    loki_factory.start()
    assert loki_factory.stop() == 0


def test_retention_drops_old_entries_on_restart(loki_factory: LokiProcess) -> None:
    """Entries older than --retention-seconds are gone after a restart."""
    loki_factory.extra_args = ["--retention-seconds", "60"]
    loki_factory.start()
    now = time.time_ns()
    values = [[str(now - 120 * NS), "old"], [str(now - 5 * NS), "new"]]
    r = httpx.post(
        f"{loki_factory.url}/loki/api/v1/push",
        json={"streams": [{"stream": {"job": "ret"}, "values": values}]},
    )
    assert r.status_code == 204
    loki_factory.stop()
    loki_factory.start()
    assert [v[1] for _, vs in _lines(loki_factory.url, '{job="ret"}') for v in vs] == ["new"]


def test_oversized_body_is_413(loki: LokiProcess) -> None:
    """A body over the cap is refused with 413, and a gzip bomb too."""
    big = b"x" * (MAX_BODY_BYTES + 1)
    r = httpx.post(
        f"{loki.url}/loki/api/v1/push", content=big, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413
    bomb = gzip.compress(b"[" * (MAX_BODY_BYTES + 10))
    r = httpx.post(
        f"{loki.url}/loki/api/v1/push",
        content=bomb,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert r.status_code == 413


@pytest.mark.parametrize(
    ("body", "ctype", "encoding"),
    [
        (b'{"streams":[{"stream":{"a":"b"},"values":[[1,"numeric ts"]]}]}', "application/json", ""),
        (b'{"streams":[{"stream":{},"values":[["1","no labels"]]}]}', "application/json", ""),
        (b'{"streams":[{"stream":{"a":"b"},"values":[["1","x"]]}]}', "", ""),
        (b"\xff\xfe\x00garbage", "application/json", ""),
        (b"[" * 100000, "application/json", ""),
        (b"not snappy at all", "application/x-protobuf", ""),
        (b"x", "application/json", "br"),
        (b"\x1f\x8b\x08\x00truncated", "application/json", "gzip"),
        (
            json.dumps({"streams": [{"stream": {"a" * 5000: "b"}, "values": []}]}).encode(),
            "application/json",
            "",
        ),
        (b'{"streams":[{"stream":{"a":"\xc3\x28"},"values":[]}]}', "application/json", ""),
        (
            bytes(cramjam.snappy.compress_raw(b"\x0a\x05\x0a\x03\xff\xfe\xfd")),
            "application/x-protobuf",
            "",
        ),
    ],
)
def test_malformed_pushes_are_400(
    loki: LokiProcess, body: bytes, ctype: str, encoding: str
) -> None:
    """Malformed bodies (bad types, no labels, bad encoding, bad UTF-8, deep JSON) get a 400."""
    headers = {"Content-Type": ctype} if ctype else {}
    if encoding:
        headers["Content-Encoding"] = encoding
    r = httpx.post(f"{loki.url}/loki/api/v1/push", content=body, headers=headers)
    assert r.status_code == 400, r.text
    assert r.text.strip()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.one_of(
        st.binary(max_size=2048),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
            max_leaves=20,
        ).map(lambda d: json.dumps({"streams": [d]}).encode()),
    ),
    ctype=st.sampled_from(
        ["application/json", "application/x-protobuf", "text/plain; charset=utf-8"]
    ),
    encoding=st.sampled_from(["", "gzip", "deflate", "snappy"]),
    cut=st.integers(min_value=0, max_value=100),
)
def test_hostile_pushes_never_5xx(
    loki: LokiProcess, body: bytes, ctype: str, encoding: str, cut: int
) -> None:
    """Random, truncated or mistyped bodies always get a 2xx/4xx, and the process stays up."""
    if encoding == "gzip":
        body = gzip.compress(body)[: max(1, len(body) * cut // 100)]
    elif encoding == "snappy" or ctype == "application/x-protobuf":
        body = bytes(cramjam.snappy.compress_raw(body))[: max(1, len(body) * cut // 100) + 4]
    r = httpx.post(
        f"{loki.url}/loki/api/v1/push",
        content=body,
        headers={"Content-Type": ctype, "Content-Encoding": encoding},
    )
    assert r.status_code < 500, r.text
    assert httpx.get(f"{loki.url}/ready").status_code == 200


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    query=st.text(alphabet='{}[]()|=~!"`,.<>+-*/^ajsonlogfmtsumbyrate 0123456789msh_', max_size=60)
)
def test_hostile_queries_never_5xx(loki: LokiProcess, query: str) -> None:
    """Arbitrary query strings get a 200 or a 400, never a 5xx."""
    r = httpx.get(f"{loki.url}/loki/api/v1/query_range", params={"query": query, "limit": 10})
    assert r.status_code in (200, 400), r.text


def test_metrics_buildinfo_and_unsupported_tail(loki: LokiProcess) -> None:
    """/metrics counts lines, buildinfo names 2.9.3, tail answers a 400 pointing at docker."""
    metrics = httpx.get(f"{loki.url}/metrics").text
    assert "loki_distributor_lines_received_total" in metrics
    assert httpx.get(f"{loki.url}/loki/api/v1/status/buildinfo").json()["version"] == "2.9.3"
    r = httpx.get(f"{loki.url}/loki/api/v1/tail")
    assert r.status_code == 400 and "docker stack" in r.text


def test_query_parameter_errors(loki: LokiProcess) -> None:
    """Bad limits, directions, steps and timestamps are 400s with Loki's wording."""
    base = f"{loki.url}/loki/api/v1/query_range"
    q = '{job="x"}'
    cases = [
        ({"query": q, "limit": "6000"}, "max entries limit"),
        ({"query": q, "direction": "sideways"}, "invalid direction"),
        (
            {"query": f"count_over_time({q}[1m])", "step": "0.0001", "start": "0", "end": "100000"},
            "exceeded maximum resolution",
        ),
        ({"query": q, "start": "yesterday"}, "invalid start"),
        ({"query": q, "start": "200", "end": "100"}, "end timestamp must not be before"),
    ]
    for params, text in cases:
        r = httpx.get(base, params=params)
        assert r.status_code == 400 and text in r.text, (params, r.text)


def test_post_form_query(loki: LokiProcess) -> None:
    """query_range accepts its parameters as a POSTed form."""
    r = httpx.post(
        f"{loki.url}/loki/api/v1/query_range", data={"query": '{job="none"}', "limit": "5"}
    )
    assert r.status_code == 200
    assert r.json()["data"]["result"] == []
