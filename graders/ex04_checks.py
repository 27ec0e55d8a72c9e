"""Exercise 04's check logic as plain functions: the grader's probe requests, span trees, exemplars.

The grader module ``graders/test_ex04_tracing.py`` wires these to the live stack; here they take
plain data (headers, flattened :class:`~lab_stack.clients.tempo.Span` lists, OpenMetrics text, log
lines) and return what they found, or a list of problems worded for the student, so that each can
be tested on its own.

Example:
    >>> trace_id_from_headers({"traceresponse": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
    '4bf92f3577b34da6a3ce929d0e0e4736'
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from lab_stack.clients.tempo import Span

__all__ = [
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

#: ``service.name`` of the gateway and of the feature service.
GATEWAY = "prediction-gateway"
FEATURE_SERVICE = "feature-service"
#: Resource attributes every span must carry.
RESOURCE_ATTRIBUTES = ("service.name", "service.version", "deployment.environment")
#: The custom spans the student adds in the gateway.
CUSTOM_SPANS = ("fetch_features", "model_inference")
#: Attributes of the ``model_inference`` span.
INFERENCE_ATTRIBUTES = ("model.name", "model.version", "prediction.score")

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX16 = re.compile(r"^[0-9a-f]{16}$")


def trace_id_from_headers(headers: Mapping[str, str]) -> str | None:
    """The trace id a response names: ``traceresponse``, ``traceparent`` or ``X-Trace-Id``."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in ("traceresponse", "traceparent"):
        match = _TRACEPARENT.match(lowered.get(name, "").strip().lower())
        if match and match.group(1).strip("0"):
            return match.group(1)
    raw = lowered.get("x-trace-id", "").strip().lower()
    return raw if _HEX32.match(raw) and raw.strip("0") else None


def trace_id_from_log_lines(lines: Sequence[str]) -> str | None:
    """The first 32-hex ``trace_id`` field among JSON log lines (None when no line has one)."""
    for line in lines:
        record = _json_object(line)
        value = str(record.get("trace_id", "")).lower() if record else ""
        if _HEX32.match(value):
            return value
    return None


def _json_object(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


@dataclass
class Probe:
    """One request the grader sent to the gateway, and what came back."""

    request_id: str
    expect: str  # "success", "feature_error" or "inference_error"
    sent_at: float
    http_status: int = 0
    trace_id: str | None = None
    trace_source: str = ""  # "header" or "logs"
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the gateway answered 200."""
        return self.http_status == 200


def probe_body(i: int) -> dict[str, Any]:
    """A valid, unremarkable transaction for probe number ``i``."""
    return {
        "user_id": f"user-{40_000 + i:05d}",
        "amount": 42.5 + i,
        "merchant_category": "grocery",
        "channel": "online",
        "hour": 14,
        "distance_from_home_km": 3.2,
        "device_age_days": 400.0,
    }


def send_probes(
    gateway_url: str,
    feature_url: str,
    *,
    run_id: str | None = None,
    successes: int = 6,
    timeout_s: float = 10.0,
) -> list[Probe]:
    """Send ``successes`` healthy requests, one with the feature service failing, one with inference failing.

    Faults are switched through the services' ``/_control`` endpoints and reset afterwards, so the
    student's services are healthy again when this returns. Requests go out with ``httpx`` (never
    instrumented), each with an ``X-Request-ID`` of ``ex04g-<run>-<n>``.
    """
    run = run_id or uuid.uuid4().hex[:10]
    plan = ["success"] * successes + ["feature_error", "inference_error"]
    probes: list[Probe] = []
    with httpx.Client(timeout=timeout_s, trust_env=False) as client:
        try:
            for i, expect in enumerate(plan):
                if expect == "feature_error":
                    client.post(f"{feature_url}/_control", json={"error_rate": 1.0})
                elif expect == "inference_error":
                    client.post(f"{feature_url}/_control", json={"reset": True})
                    client.post(
                        f"{gateway_url}/_control",
                        json={"inference_error": "CUDA out of memory (grader probe)"},
                    )
                probe = Probe(request_id=f"ex04g-{run}-{i:03d}", expect=expect, sent_at=time.time())
                response = client.post(
                    f"{gateway_url}/predict",
                    json=probe_body(i),
                    headers={"X-Request-ID": probe.request_id},
                )
                probe.http_status = response.status_code
                probe.trace_id = trace_id_from_headers(response.headers)
                probe.trace_source = "header" if probe.trace_id else ""
                body = _json_object(response.text)
                probe.body = body or {}
                probes.append(probe)
        finally:
            client.post(f"{feature_url}/_control", json={"reset": True})
            client.post(f"{gateway_url}/_control", json={"reset": True})
    return probes


def ancestors(found: Sequence[Span], span: Span) -> list[Span]:
    """The chain of parents of ``span`` inside ``found``, nearest first."""
    by_id = {s.span_id: s for s in found}
    out: list[Span] = []
    seen = {span.span_id}
    current = span
    while current.parent_span_id and current.parent_span_id in by_id:
        current = by_id[current.parent_span_id]
        if current.span_id in seen:
            break
        seen.add(current.span_id)
        out.append(current)
    return out


def request_span(found: Sequence[Span]) -> Span | None:
    """The gateway's SERVER span of ``POST /predict`` in a trace (None when it is not there)."""
    servers = [
        s
        for s in found
        if s.kind == "SPAN_KIND_SERVER"
        and s.service_name == GATEWAY
        and ("predict" in s.name or "predict" in str(s.attributes.get("http.route", "")))
    ]
    return servers[0] if servers else None


def _names(found: Sequence[Span]) -> str:
    shown = sorted({f"{s.service_name or '?'}:{s.name}" for s in found})
    return ", ".join(shown[:12]) + (" ..." if len(shown) > 12 else "") if shown else "no spans"


def cross_service_problems(found: Sequence[Span]) -> list[str]:
    """What is missing for gateway SERVER → gateway CLIENT → feature-service SERVER in one trace."""
    root = request_span(found)
    if root is None:
        return [f"no {GATEWAY} SERVER span for POST /predict (spans: {_names(found)})"]
    feature_servers = [
        s for s in found if s.kind == "SPAN_KIND_SERVER" and s.service_name == FEATURE_SERVICE
    ]
    clients = [
        s
        for s in found
        if s.kind == "SPAN_KIND_CLIENT"
        and s.service_name == GATEWAY
        and root in ancestors(found, s)
    ]
    if not clients:
        return [
            f"no CLIENT span under the gateway's request span (spans: {_names(found)}): the "
            "call to the feature service is not traced and sends no traceparent, so the feature "
            "service starts a trace of its own (two disconnected traces)"
        ]
    if not feature_servers:
        return [
            f"no {FEATURE_SERVICE} SERVER span in the gateway's trace (spans: {_names(found)}): "
            "the feature service started a trace of its own — traceparent was not sent"
        ]
    client_ids = {c.span_id for c in clients}
    if not any(s.parent_span_id in client_ids for s in feature_servers):
        return [
            f"the {FEATURE_SERVICE} SERVER span's parent is not the gateway's CLIENT span "
            f"(parents: {[s.parent_span_id for s in feature_servers]}, clients: {sorted(client_ids)})"
        ]
    return []


def custom_span_problems(
    found: Sequence[Span], *, model_name: str, model_version: str, score: float | None
) -> list[str]:
    """What is wrong with ``fetch_features`` / ``model_inference`` in one successful request's trace."""
    root = request_span(found)
    if root is None:
        return [f"no {GATEWAY} SERVER span for POST /predict (spans: {_names(found)})"]
    problems: list[str] = []
    for name in CUSTOM_SPANS:
        spans = [s for s in found if s.name == name]
        if not spans:
            problems.append(
                f"no {name!r} span in the request's trace (spans: {_names(found)}); if your code "
                "creates it, it was started outside the request's context and is the root of a "
                "trace of its own"
            )
        elif not any(root in ancestors(found, s) for s in spans):
            problems.append(f"{name!r} is in the trace but not under the gateway's request span")
    inference = [s for s in found if s.name == "model_inference"]
    if inference:
        attrs = inference[0].attributes
        want: dict[str, Any] = {"model.name": model_name, "model.version": model_version}
        for key, value in want.items():
            if str(attrs.get(key, "")) != value:
                problems.append(f"model_inference {key}={attrs.get(key)!r} (want {value!r})")
        raw = attrs.get("prediction.score")
        if not isinstance(raw, (int, float)) or isinstance(raw, bool):
            problems.append(f"model_inference prediction.score={raw!r} (want a number)")
        elif score is not None and abs(float(raw) - score) > 1e-6:
            problems.append(
                f"model_inference prediction.score={raw} but the response's "
                f"fraud_probability was {score}"
            )
    return problems


def error_problems(found: Sequence[Span], *, expect_span: str) -> list[str]:
    """What is missing in a failed request's trace: error status on the request and on ``expect_span``."""
    root = request_span(found)
    problems: list[str] = []
    if root is None:
        return [f"no {GATEWAY} SERVER span for POST /predict (spans: {_names(found)})"]
    if not root.is_error:
        problems.append(f"the request span has status {root.status_code} (want STATUS_CODE_ERROR)")
    failing = [s for s in found if s.name == expect_span]
    if not failing:
        problems.append(f"no {expect_span!r} span in the failed request's trace")
        return problems
    span = failing[0]
    if not span.is_error:
        problems.append(f"{expect_span!r} has status {span.status_code} (want STATUS_CODE_ERROR)")
    events = [e for e in span.events if e.name == "exception"]
    if not events:
        problems.append(f"{expect_span!r} has no 'exception' event (record_exception)")
    elif not str(events[0].attributes.get("exception.type", "")):
        problems.append(f"{expect_span!r}'s exception event has no exception.type")
    return problems


def resource_problems(found: Sequence[Span]) -> list[str]:
    """Spans whose resource lacks service.name / service.version / deployment.environment."""
    problems: list[str] = []
    services = {s.service_name for s in found}
    for service in sorted(services):
        resource = next(s.resource for s in found if s.service_name == service)
        missing = [k for k in RESOURCE_ATTRIBUTES if not str(resource.get(k, "")).strip()]
        if missing:
            problems.append(f"{service or 'a service without a name'}: missing {missing}")
    unknown = services - {GATEWAY, FEATURE_SERVICE}
    if unknown:
        problems.append(
            f"service.name {sorted(unknown)} (want {GATEWAY!r} and {FEATURE_SERVICE!r})"
        )
    return problems


def log_problems(lines: Sequence[str], *, request_id: str, trace_id: str) -> list[str]:
    """What is wrong with the Loki lines of one request: each needs this trace_id and a span_id."""
    mine = [r for r in (_json_object(line) for line in lines) if r is not None]
    mine = [r for r in mine if request_id in json.dumps(r)]
    if not mine:
        return [f"no JSON log line in Loki mentions request {request_id}"]
    problems: list[str] = []
    for record in mine:
        found = str(record.get("trace_id", ""))
        if found != trace_id:
            shown = found or "no trace_id field"
            problems.append(f"request {request_id}: line {record.get('event', '?')!r} has {shown}")
        elif not _HEX16.match(str(record.get("span_id", ""))):
            problems.append(f"request {request_id}: line without a 16-hex span_id")
    return problems


@dataclass(frozen=True)
class Exemplar:
    """One exemplar of a histogram bucket: the series, its labels and the trace it points at."""

    sample: str
    labels: Mapping[str, str]
    value: float
    trace_id: str


def exemplars(text: str, metric: str) -> list[Exemplar]:
    """The exemplars of ``metric``'s samples in an OpenMetrics exposition (``# {trace_id=...}``)."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    out: list[Exemplar] = []
    # prometheus_client's parser is untyped; it yields Metric objects with .samples
    for family in text_string_to_metric_families(text):  # type: ignore[no-untyped-call]
        if family.name != metric:
            continue
        for sample in family.samples:
            if sample.exemplar is None:
                continue
            labels = dict(sample.exemplar.labels)
            tid = str(labels.get("trace_id", labels.get("traceID", ""))).lower()
            out.append(Exemplar(sample.name, dict(sample.labels), sample.exemplar.value, tid))
    return out
