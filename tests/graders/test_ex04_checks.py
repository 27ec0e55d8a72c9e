"""Exercise 04's check logic: trace ids from headers and logs, span trees, errors, logs, exemplars."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from graders import ex04_checks
from graders.ex04_checks import (
    FEATURE_SERVICE,
    GATEWAY,
    ancestors,
    cross_service_problems,
    custom_span_problems,
    error_problems,
    exemplars,
    log_problems,
    probe_body,
    request_span,
    resource_problems,
    trace_id_from_headers,
    trace_id_from_log_lines,
)
from lab_stack.clients.tempo import Span, SpanEvent
from ml_service.gateway_app import PredictRequest

TID = "4bf92f3577b34da6a3ce929d0e0e4736"
RESOURCE = {"service.version": "1.0.0", "deployment.environment": "lab"}


def _span(
    span_id: str,
    parent: str | None,
    name: str,
    kind: str = "SPAN_KIND_INTERNAL",
    service: str = GATEWAY,
    *,
    status: str = "STATUS_CODE_UNSET",
    attributes: dict[str, Any] | None = None,
    events: Sequence[SpanEvent] = (),
    resource: dict[str, Any] | None = None,
) -> Span:
    return Span(
        trace_id=TID,
        span_id=span_id.rjust(16, "0"),
        parent_span_id=parent.rjust(16, "0") if parent else None,
        name=name,
        kind=f"SPAN_KIND_{kind.upper()}" if not kind.startswith("SPAN_") else kind,
        service_name=service,
        start_ns=int(span_id, 16),
        end_ns=int(span_id, 16) + 10,
        status_code=status,
        attributes=attributes or {},
        resource={"service.name": service, **(RESOURCE if resource is None else resource)},
        events=tuple(events),
    )


def _healthy(score: float = 0.25) -> list[Span]:
    """A complete, correct trace of one prediction."""
    return [
        _span("1", None, "POST /predict", "server"),
        _span("2", "1", "fetch_features"),
        _span("3", "2", "GET", "client"),
        _span("4", "3", "GET /features/{user_id}", "server", FEATURE_SERVICE),
        _span(
            "5",
            "1",
            "model_inference",
            attributes={
                "model.name": "fraud-detector",
                "model.version": "1.0.0",
                "prediction.score": score,
            },
        ),
    ]


def test_trace_id_comes_from_traceresponse_traceparent_or_x_trace_id() -> None:
    """The three response headers are read, in that order; malformed or all-zero ids are not."""
    assert trace_id_from_headers({"traceresponse": f"00-{TID}-00f067aa0ba902b7-01"}) == TID
    assert trace_id_from_headers({"Traceparent": f"00-{TID}-00f067aa0ba902b7-00"}) == TID
    assert trace_id_from_headers({"X-Trace-Id": TID.upper()}) == TID
    assert (
        trace_id_from_headers({"traceresponse": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"}) is None
    )
    assert trace_id_from_headers({"x-trace-id": "not-hex"}) is None


def test_trace_id_from_log_lines_skips_non_json_and_lines_without_one() -> None:
    """The first JSON line with a 32-hex trace_id gives the id."""
    lines = ["plain text", json.dumps({"event": "x"}), json.dumps({"trace_id": TID})]
    assert trace_id_from_log_lines(lines) == TID
    assert trace_id_from_log_lines(["{}", "[]"]) is None


def test_probe_bodies_are_valid_gateway_requests() -> None:
    """Every body the grader sends passes the gateway's own validation."""
    for i in range(10):
        PredictRequest.model_validate(probe_body(i))


def test_ancestors_follow_parent_links_nearest_first() -> None:
    """ancestors() walks up the tree and stops at the root."""
    spans = _healthy()
    chain = ancestors(spans, spans[3])
    assert [s.name for s in chain] == ["GET", "fetch_features", "POST /predict"]


def test_a_complete_trace_has_no_problems() -> None:
    """The correct tree passes the cross-service, custom-span, resource checks."""
    spans = _healthy(0.25)
    assert request_span(spans) is spans[0]
    assert cross_service_problems(spans) == []
    assert (
        custom_span_problems(spans, model_name="fraud-detector", model_version="1.0.0", score=0.25)
        == []
    )
    assert resource_problems(spans) == []


def test_missing_propagation_is_reported_as_two_disconnected_traces() -> None:
    """Without the client span and traceparent, the feature service's span is not in the trace."""
    spans = [s for s in _healthy() if s.kind != "SPAN_KIND_CLIENT" and s.service_name == GATEWAY]
    problems = cross_service_problems(spans)
    assert len(problems) == 1 and "two disconnected traces" in problems[0]


def test_client_span_without_injection_leaves_the_feature_service_out() -> None:
    """A traced client call whose traceparent never arrived is named as such."""
    spans = [s for s in _healthy() if s.service_name == GATEWAY]
    assert "traceparent was not sent" in cross_service_problems(spans)[0]


def test_orphan_custom_spans_are_reported() -> None:
    """fetch_features/model_inference outside the request's trace fail, with the likely cause."""
    spans = [s for s in _healthy() if s.name not in ("fetch_features", "model_inference")]
    problems = custom_span_problems(
        spans, model_name="fraud-detector", model_version="1.0.0", score=None
    )
    assert len(problems) == 2
    assert all("outside the request's context" in p for p in problems)


def test_custom_span_not_under_the_request_span_fails() -> None:
    """A custom span in the trace but parented elsewhere is not under the request span."""
    spans = _healthy()
    spans[4] = _span("5", None, "model_inference", attributes=dict(spans[4].attributes))
    problems = custom_span_problems(
        spans, model_name="fraud-detector", model_version="1.0.0", score=0.25
    )
    assert problems == [
        "'model_inference' is in the trace but not under the gateway's request span"
    ]


def test_inference_attributes_are_compared_with_the_response() -> None:
    """Wrong model version, a text score and a score other than the response's are each named."""
    problems = custom_span_problems(
        _healthy(0.9), model_name="fraud-detector", model_version="2.0.0", score=0.25
    )
    assert any("model.version" in p for p in problems)
    assert any("fraud_probability was 0.25" in p for p in problems)
    spans = _healthy()
    spans[4] = _span(
        "5",
        "1",
        "model_inference",
        attributes={
            "model.name": "fraud-detector",
            "model.version": "1.0.0",
            "prediction.score": "0.25",
        },
    )
    problems = custom_span_problems(
        spans, model_name="fraud-detector", model_version="1.0.0", score=0.25
    )
    assert problems == ["model_inference prediction.score='0.25' (want a number)"]


def test_error_trace_needs_error_status_and_an_exception_event() -> None:
    """A failed request passes only with both spans in ERROR and an exception event with its type."""
    event = SpanEvent("exception", 1, {"exception.type": "FeatureServiceError"})
    good = [
        _span("1", None, "POST /predict", "server", status="STATUS_CODE_ERROR"),
        _span("2", "1", "fetch_features", status="STATUS_CODE_ERROR", events=[event]),
    ]
    assert error_problems(good, expect_span="fetch_features") == []
    bad = [
        _span("1", None, "POST /predict", "server"),
        _span("2", "1", "fetch_features"),
    ]
    problems = error_problems(bad, expect_span="fetch_features")
    assert len(problems) == 3
    assert "no 'exception' event" in problems[2]


def test_resource_attributes_and_service_names_are_required() -> None:
    """A service without service.version / deployment.environment, or an unknown name, is reported."""
    spans = [
        _span("1", None, "POST /predict", "server", resource={}),
        _span("2", "1", "x", service="unknown_service"),
    ]
    problems = resource_problems(spans)
    assert any(
        p.startswith(f"{GATEWAY}: missing ['service.version', 'deployment.environment']")
        for p in problems
    )
    assert any("unknown_service" in p for p in problems)


def test_log_lines_must_carry_the_requests_trace_id_and_a_span_id() -> None:
    """Lines of the request with the right ids pass; missing or wrong ids, or no line, fail."""
    good = json.dumps(
        {"event": "prediction", "request_id": "r1", "trace_id": TID, "span_id": "00f067aa0ba902b7"}
    )
    assert log_problems([good, "not json"], request_id="r1", trace_id=TID) == []
    missing = json.dumps({"event": "prediction", "request_id": "r1"})
    assert log_problems([missing], request_id="r1", trace_id=TID) == [
        "request r1: line 'prediction' has no trace_id field"
    ]
    no_span = json.dumps({"event": "prediction", "request_id": "r1", "trace_id": TID})
    assert "span_id" in log_problems([no_span], request_id="r1", trace_id=TID)[0]
    assert log_problems([good], request_id="r2", trace_id=TID) == [
        "no JSON log line in Loki mentions request r2"
    ]


def test_exemplars_are_parsed_from_the_openmetrics_exposition() -> None:
    """A histogram observed with a trace_id exemplar shows it on its bucket; others have none."""
    registry = CollectorRegistry()
    hist = Histogram(
        "ml_prediction_duration_seconds",
        "Latency.",
        ["model_name"],
        registry=registry,
        buckets=(0.1, 1.0),
    )
    hist.labels("m").observe(0.05, exemplar={"trace_id": TID})
    hist.labels("m").observe(0.5)
    text = openmetrics_latest(registry).decode()
    found = exemplars(text, "ml_prediction_duration_seconds")
    assert [(e.sample, e.labels["le"], e.trace_id) for e in found] == [
        ("ml_prediction_duration_seconds_bucket", "0.1", TID)
    ]
    assert exemplars(text, "other_metric") == []


def test_module_exports_are_pinned() -> None:
    """The helper module's public names are exactly these."""
    assert sorted(ex04_checks.__all__) == sorted(
        [
            "CUSTOM_SPANS",
            "FEATURE_SERVICE",
            "GATEWAY",
            "INFERENCE_ATTRIBUTES",
            "RESOURCE_ATTRIBUTES",
            "Exemplar",
            "Probe",
            "ancestors",
            "cross_service_problems",
            "custom_span_problems",
            "error_problems",
            "exemplars",
            "log_problems",
            "probe_body",
            "request_span",
            "resource_problems",
            "send_probes",
            "trace_id_from_headers",
            "trace_id_from_log_lines",
        ]
    )


@pytest.mark.parametrize("header", ["traceresponse", "traceparent"])
def test_version_and_flags_do_not_matter_for_the_id(header: str) -> None:
    """Any version and flags byte around a valid id still gives the id."""
    assert trace_id_from_headers({header: f"ff-{TID}-00f067aa0ba902b7-00"}) == TID
