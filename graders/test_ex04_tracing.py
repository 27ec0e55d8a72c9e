"""Exercise 04 — distributed tracing to Tempo: the checks, their points and the mutants.

Every verdict comes from the backends. The grader finds the notebook's gateway among Prometheus's
targets of job ``ml-tracing`` (those listened on by the graded kernel), sends its own requests —
healthy ones, one with the feature service failing, one with inference failing — and reads each
request's trace id from the response (``traceresponse``/``traceparent``/``X-Trace-Id``, else from
the request's log line in Loki). Traces are then fetched **by id** from Tempo (search lags
ingestion in a real Tempo, lookup by id does not) and their span trees checked; the request's
Loki lines must carry the same trace id; the gateway's OpenMetrics exemplars must point at traces
Tempo holds; the student's TraceQL must find the grader's traces.

Run one submission: ``pytest graders/test_ex04_tracing.py --notebook PATH`` or ``make grade EX=04``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from graders.context import GradingContext, owned_targets, recorded_answers, wait_until
from graders.errors import CheckFailed
from graders.ex04_checks import (
    FEATURE_SERVICE,
    GATEWAY,
    Exemplar,
    Probe,
    cross_service_problems,
    custom_span_problems,
    error_problems,
    exemplars,
    log_problems,
    request_span,
    resource_problems,
    send_probes,
    trace_id_from_log_lines,
)
from graders.registry import Exercise
from lab_stack.clients import LogEntry
from lab_stack.clients.loki import entries
from lab_stack.clients.tempo import Span, trace_ids
from lab_stack.errors import NotFound

__all__ = ["ANSWERS_FILE", "ANSWER_KEYS", "EXERCISE", "JOB", "LATENCY_METRIC", "Ex04State"]

#: The scrape job the exercise asks the student to register the gateway under.
JOB = "ml-tracing"
#: Where the notebook's ``graders.record_answers("04", ...)`` cell writes the TraceQL answers.
ANSWERS_FILE = "answers_ex04.json"
ANSWER_KEYS = ("inference_spans", "failed_requests")
#: The latency histogram that carries the exemplars.
LATENCY_METRIC = "ml_prediction_duration_seconds"
#: Seconds to wait for spans to reach Tempo (BatchSpanProcessor's default delay is 5 s).
TRACE_WAIT_S = 15.0
#: Extra seconds to wait for the rest of a trace once the gateway's request span is there.
TRACE_GRACE_S = 3.0
#: Seconds to wait for the log shipper to bring the request's lines to Loki.
LOG_WAIT_S = 12.0
#: Seconds to wait for TraceQL search to find the traces (a real Tempo indexes with a delay).
SEARCH_WAIT_S = 12.0

_T = TypeVar("_T")


def _fail(expected: str, found: str, hint: str) -> CheckFailed:
    return CheckFailed(expected=expected, found=found, hint=hint)


class Ex04State:
    """What the checks look at, computed once and lazily; a failure is remembered, not retried."""

    def __init__(self, ctx: GradingContext) -> None:
        self.ctx = ctx
        self.tempo = ctx.stack.tempo
        self.loki = ctx.stack.loki
        self._memo: dict[str, Any] = {}

    def _once(self, key: str, compute: Callable[[], _T]) -> _T:
        if key not in self._memo:
            try:
                self._memo[key] = (True, compute())
            except CheckFailed as exc:
                self._memo[key] = (False, exc)
        ok, value = self._memo[key]
        if not ok:
            raise value
        result: _T = value
        return result

    # --- the student's services ----------------------------------------------------------------
    @property
    def gateway_url(self) -> str:
        """The notebook's gateway, found through Prometheus's targets of job ml-tracing."""
        return self._once("gateway", self._find_gateway)

    def _find_gateway(self) -> str:
        found: list[str] = []

        def ready() -> bool:
            mine, _ = owned_targets(self.ctx.stack, JOB, self.ctx.kernel_pid)
            found[:] = [t.scrape_url for t in mine]
            return bool(found)

        wait_until(ready, timeout=8.0)
        if not found:
            _, others = owned_targets(self.ctx.stack, JOB, self.ctx.kernel_pid)
            raise _fail(
                f"the notebook's gateway registered with Prometheus under job {JOB!r}",
                f"no target of job {JOB!r} served by the notebook's kernel"
                + (f" (other targets: {[t.scrape_url for t in others]})" if others else ""),
                f"run the cell that starts the services and calls register(stack, {JOB!r}, "
                "services.gateway_url).",
            )
        parts = urlsplit(sorted(found)[0])
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def feature_url(self) -> str:
        """The feature service the gateway calls (its ``GET /health`` says)."""
        return self._once("feature", self._find_feature_url)

    def _find_feature_url(self) -> str:
        try:
            health = httpx.get(f"{self.gateway_url}/health", timeout=5.0, trust_env=False).json()
        except (httpx.HTTPError, ValueError) as exc:
            raise _fail(
                f"GET {self.gateway_url}/health to answer",
                f"{type(exc).__name__}: {exc}",
                "keep the services running until the checks have finished.",
            ) from None
        return str(health.get("feature_url", "")).rstrip("/")

    # --- the grader's own requests ---------------------------------------------------------------
    @property
    def probes(self) -> list[Probe]:
        """The grader's requests, each with its trace id (from the response or from Loki)."""
        return self._once("probes", self._send)

    def _send(self) -> list[Probe]:
        try:
            probes = send_probes(self.gateway_url, self.feature_url)
        except httpx.HTTPError as exc:
            raise _fail(
                f"POST {self.gateway_url}/predict to answer",
                f"{type(exc).__name__}: {exc}",
                "keep the services running; a broken hook shows up as failed requests.",
            ) from None
        missing = [p for p in probes if p.trace_id is None]
        if missing:
            self._ids_from_logs(missing)
        healthy = [p for p in probes if p.expect == "success"]
        if not any(p.ok for p in healthy):
            statuses = sorted({p.http_status for p in healthy})
            raise _fail(
                "the gateway to answer 200 to healthy requests",
                f"HTTP {statuses}",
                "run the notebook's traffic cell and read the gateway's error message.",
            )
        return probes

    def _ids_from_logs(self, probes: list[Probe]) -> None:
        """Fill in trace ids from the requests' log lines when the responses named none."""
        lines = self.log_entries(probes)
        for probe in probes:
            tid = trace_id_from_log_lines([e.line for e in lines if probe.request_id in e.line])
            if tid:
                probe.trace_id, probe.trace_source = tid, "logs"

    def require_trace_ids(self) -> list[Probe]:
        """The probes, or a failure when none of them can be tied to a trace id."""
        probes = self.probes
        if not any(p.trace_id for p in probes):
            raise _fail(
                "a trace id for each of the grader's requests (response header traceresponse or "
                "traceparent, or trace_id in the request's log lines)",
                f"none for {len(probes)} requests",
                "call set_global_response_propagator(TraceResponsePropagator()) before "
                "instrumenting, and instrument the app with FastAPIInstrumentor.",
            )
        return probes

    # --- Tempo -----------------------------------------------------------------------------------
    @property
    def traces(self) -> dict[str, list[Span]]:
        """Trace id → spans, fetched by id from Tempo; ids Tempo does not have map to ``[]``."""
        return self._once("traces", self._fetch_traces)

    def _fetch_one(self, trace_id: str) -> list[Span]:
        try:
            return self.tempo.trace_spans(trace_id)
        except NotFound:
            return []

    def _fetch_traces(self) -> dict[str, list[Span]]:
        ids = sorted({p.trace_id for p in self.require_trace_ids() if p.trace_id})
        found: dict[str, list[Span]] = {tid: [] for tid in ids}
        complete_at: dict[str, float] = {}

        def done() -> bool:
            now = time.monotonic()
            for tid in ids:
                if tid in complete_at and now - complete_at[tid] > TRACE_GRACE_S:
                    continue
                found[tid] = self._fetch_one(tid)
                if request_span(found[tid]) is not None:
                    if any(s.service_name == FEATURE_SERVICE for s in found[tid]):
                        complete_at[tid] = 0.0  # both services are in: nothing more to wait for
                    else:
                        complete_at.setdefault(tid, now)
            return all(t in complete_at and now - complete_at[t] > TRACE_GRACE_S for t in ids)

        wait_until(done, timeout=TRACE_WAIT_S, interval=0.5)
        return found

    def trace_of(self, probe: Probe) -> list[Span]:
        """The spans of ``probe``'s trace; a failure naming the id when Tempo has none."""
        spans = self.traces.get(probe.trace_id or "", [])
        if not spans:
            raise _fail(
                f"trace {probe.trace_id} of request {probe.request_id} in Tempo",
                f"nothing after {TRACE_WAIT_S:.0f} s",
                "make the traces arrive first (see the check 'Traces arrive in Tempo').",
            )
        return spans

    def probes_of(self, expect: str) -> list[Probe]:
        """The probes of one kind that have a trace id."""
        return [p for p in self.require_trace_ids() if p.expect == expect and p.trace_id]

    # --- Loki ------------------------------------------------------------------------------------
    def log_entries(self, probes: list[Probe]) -> list[LogEntry]:
        """Loki lines (job="services") mentioning the grader's run, polled until each probe has one."""
        if not probes:
            return []
        prefix = probes[0].request_id.rsplit("-", 1)[0]
        start = min(p.sent_at for p in probes) - 60
        got: list[LogEntry] = []

        def arrived() -> bool:
            data = self.loki.query_range(
                f'{{job="services"}} |= "{prefix}"', start=start, end=time.time() + 5, limit=5000
            )
            got[:] = entries(data)
            return all(any(p.request_id in e.line for e in got) for p in probes)

        wait_until(arrived, timeout=LOG_WAIT_S, interval=0.5)
        return got

    # --- answers, metrics ---------------------------------------------------------------------------
    @property
    def answers(self) -> dict[str, str]:
        """The student's TraceQL answers, from the file the notebook wrote."""
        return recorded_answers(
            self.ctx.workdir / ANSWERS_FILE,
            expected=f"the TraceQL answers in {ANSWERS_FILE} (written by the notebook's answers cell)",
            hint="fill in the TRACEQL dictionary and run the cell that calls graders.record_answers.",
        )

    def search(self, key: str, want: set[str]) -> set[str]:
        """Trace ids the student's TraceQL ``key`` finds around the probes (polled for ``want``)."""
        query = self.answers.get(key, "").strip()
        if not query or "YOUR QUERY" in query:
            raise _fail(
                f"a TraceQL query for {key!r}", "an empty answer", f"write TRACEQL[{key!r}]."
            )
        start = int(min(p.sent_at for p in self.probes)) - 30
        got: set[str] = set()
        stored = {tid for tid in want if self.traces.get(tid)}
        if want and not stored:
            raise _fail(
                f"TraceQL {key!r} to find the grader's traces",
                "none of them is in Tempo, so no query can find them",
                "make the traces arrive first (see the check 'Traces arrive in Tempo').",
            )

        def found() -> bool:
            result = self.tempo.search(q=query, start=start, end=int(time.time()) + 5, limit=1000)
            got.clear()
            got.update(trace_ids(result))
            return want <= got

        wait_until(found, timeout=SEARCH_WAIT_S, interval=0.5)
        return got

    @property
    def exposition(self) -> tuple[str, str]:
        """The gateway's ``/metrics`` as OpenMetrics: (content type, text)."""
        return self._once("metrics", self._scrape)

    def _scrape(self) -> tuple[str, str]:
        _ = self.probes  # the exemplars should come from the grader's requests
        url = f"{self.gateway_url}/metrics"
        response = httpx.get(
            url,
            headers={"Accept": "application/openmetrics-text; version=1.0.0"},
            timeout=5.0,
            trust_env=False,
        )
        return response.headers.get("content-type", ""), response.text


EXERCISE = Exercise(
    number="04",
    folder="ex04_tracing",
    notebook="ex04_tracing.ipynb",
    title="Distributed tracing to Tempo",
    state=Ex04State,
    cell_timeout=120.0,
    total_timeout=240.0,
    shares_stack=True,
)


# --- checks (declaration order is the table's order) ----------------------------------------------
@EXERCISE.check(points=2, title="Traces of the grader's requests arrive in Tempo")
def test_traces_arrive(state: Ex04State) -> None:
    """Every request the grader sent has its trace in Tempo, looked up by id."""
    probes = state.require_trace_ids()
    traces = state.traces
    missing = [p for p in probes if p.trace_id and not traces.get(p.trace_id)]
    if len(missing) == len([p for p in probes if p.trace_id]):
        raise _fail(
            f"the traces of the grader's {len(probes)} requests in Tempo",
            f"none of them after {TRACE_WAIT_S:.0f} s (ids from the responses, e.g. "
            f"{missing[0].trace_id}): spans are created but nothing arrives in Tempo",
            "point the OTLP exporter at Tempo's OTLP receiver — gRPC: OTLPSpanExporter("
            f"endpoint={state.ctx.stack.url('tempo_otlp_grpc')!r}, insecure=True); HTTP: "
            f"{state.ctx.stack.url('tempo_otlp_http')}/v1/traces — and add it to the provider "
            "with a BatchSpanProcessor.",
        )
    if missing:
        raise _fail(
            "every request's trace in Tempo",
            f"{len(missing)} of {len(probes)} missing: {[p.trace_id for p in missing][:4]}",
            "do not sample the gateway's traces away, and keep the BatchSpanProcessor's queue "
            "large enough (the defaults are fine).",
        )


@EXERCISE.check(points=1, title="Spans carry service.name, service.version, deployment.environment")
def test_resource_attributes(state: Ex04State) -> None:
    """Each service's spans have the three resource attributes and the two service names."""
    problems: list[str] = []
    services: set[str] = set()
    for probe in state.probes_of("success")[:2]:
        spans = state.trace_of(probe)
        services |= {s.service_name for s in spans}
        problems += resource_problems(spans)
    if GATEWAY not in services:
        problems.append(f"no span of service.name {GATEWAY!r} (found {sorted(services)})")
    if problems:
        raise _fail(
            "resource attributes service.name (prediction-gateway / feature-service), "
            "service.version and deployment.environment on every span",
            "; ".join(sorted(set(problems))),
            "create each TracerProvider with Resource.create({...}) holding all three.",
        )


@EXERCISE.check(points=3, title="One trace crosses gateway → feature service (traceparent)")
def test_cross_service_trace(state: Ex04State) -> None:
    """A request's trace holds the gateway SERVER span, its CLIENT span and the feature service's SERVER span."""
    bad: list[str] = []
    probes = state.probes_of("success")
    for probe in probes:
        problems = cross_service_problems(state.trace_of(probe))
        if problems:
            bad.append(f"trace {probe.trace_id}: {problems[0]}")
    if bad:
        raise _fail(
            f"for each of {len(probes)} requests one trace: {GATEWAY} SERVER → CLIENT → "
            f"{FEATURE_SERVICE} SERVER",
            f"{len(bad)} broken, e.g. {bad[0]}",
            "instrument the HTTP client (RequestsInstrumentor().instrument(tracer_provider=...)) "
            "so every call to the feature service carries a traceparent header, and instrument "
            "both apps with FastAPIInstrumentor.",
        )


@EXERCISE.check(points=3, title="fetch_features and model_inference spans under the request span")
def test_custom_spans(state: Ex04State) -> None:
    """Both custom spans sit under the gateway's request span, model_inference with its attributes."""
    bad: list[str] = []
    for probe in state.probes_of("success"):
        if not probe.ok:
            continue
        problems = custom_span_problems(
            state.trace_of(probe),
            model_name=str(probe.body.get("model_name", "")),
            model_version=str(probe.body.get("model_version", "")),
            score=_float(probe.body.get("fraud_probability")),
        )
        if problems:
            bad.append(f"trace {probe.trace_id}: {'; '.join(problems)}")
    if bad:
        raise _fail(
            "spans 'fetch_features' and 'model_inference' in each request's trace, under the "
            "gateway's request span, model_inference with model.name, model.version and "
            "prediction.score (= the response's fraud_probability)",
            f"{len(bad)} requests wrong, e.g. {bad[0]}",
            "start them with tracer.start_as_current_span(name) inside the hook wrappers, in the "
            "request's own context (no context=..., no fresh thread), and set the attributes.",
        )


@EXERCISE.check(
    points=2, title="Failed requests carry error status and an exception event", hidden=True
)
def test_errors_recorded(state: Ex04State) -> None:
    """The feature-failure and inference-failure traces mark the request and the failing span as errors."""
    bad: list[str] = []
    for expect, span_name in (
        ("feature_error", "fetch_features"),
        ("inference_error", "model_inference"),
    ):
        for probe in state.probes_of(expect):
            problems = error_problems(state.trace_of(probe), expect_span=span_name)
            if problems:
                bad.append(
                    f"{expect} (HTTP {probe.http_status}, trace {probe.trace_id}): {'; '.join(problems)}"
                )
    if bad:
        raise _fail(
            "on a failed request: the request span with status ERROR, and the failing span "
            "(fetch_features / model_inference) with status ERROR and an 'exception' event",
            "; ".join(bad),
            "let the exception leave the span's with-block (start_as_current_span records it and "
            "sets the status), or call span.record_exception(exc) and "
            "span.set_status(Status(StatusCode.ERROR)) yourself.",
        )


@EXERCISE.check(points=1, title="TraceQL: find the inference spans")
def test_traceql_inference_spans(state: Ex04State) -> None:
    """The inference_spans answer finds the traces of the grader's successful requests."""
    want = {p.trace_id for p in state.probes_of("success") if p.trace_id and p.ok}
    got = state.search("inference_spans", want)
    if not want <= got:
        raise _fail(
            f"the traces of the grader's {len(want)} successful predictions",
            f"{len(want & got)} of them (the query returned {len(got)} traces)",
            '{ name = "model_inference" && resource.service.name = "prediction-gateway" }.',
        )


@EXERCISE.check(points=1, title="TraceQL: find the failed requests", hidden=True)
def test_traceql_failed_requests(state: Ex04State) -> None:
    """The failed_requests answer finds the grader's failed traces and none of its successful ones."""
    failed = {p.trace_id for p in state.require_trace_ids() if p.trace_id and not p.ok}
    healthy = {p.trace_id for p in state.require_trace_ids() if p.trace_id and p.ok}
    got = state.search("failed_requests", failed)
    if not failed <= got or healthy & got:
        raise _fail(
            f"the grader's {len(failed)} failed traces and none of its {len(healthy)} healthy ones",
            f"{len(failed & got)} failed and {len(healthy & got)} healthy",
            '{ resource.service.name = "prediction-gateway" && status = error }.',
        )


@EXERCISE.check(points=2, title="Log lines carry the trace id of their request")
def test_logs_carry_trace_id(state: Ex04State) -> None:
    """The Loki lines of each grader request have trace_id equal to its trace and a span_id."""
    probes = [p for p in state.require_trace_ids() if p.trace_id and p.trace_source == "header"]
    if not probes:
        raise _fail(
            "trace ids in the responses (traceresponse header) to compare the logs with",
            "none",
            "call set_global_response_propagator(TraceResponsePropagator()).",
        )
    lines = [e.line for e in state.log_entries(probes)]
    bad: list[str] = []
    for probe in probes:
        bad += log_problems(lines, request_id=probe.request_id, trace_id=probe.trace_id or "")
    if bad:
        raise _fail(
            "every JSON line of each request in Loki with trace_id = the request's trace id "
            "(32 hex) and span_id (16 hex)",
            f"{len(bad)} problems, e.g. {bad[:2]}",
            "add a structlog processor that reads trace.get_current_span().get_span_context() "
            "and writes format(ctx.trace_id, '032x') / format(ctx.span_id, '016x'), before the "
            "JSONRenderer, and log to a file in stack.service_logs_dir.",
        )


@EXERCISE.check(points=2, title="Latency exemplars point at traces in Tempo")
def test_exemplars_link_traces(state: Ex04State) -> None:
    """The latency histogram's OpenMetrics exemplars carry trace ids that Tempo holds."""
    content_type, text = state.exposition
    if "openmetrics" not in content_type:
        raise _fail(
            "/metrics in OpenMetrics format when the scraper asks for it (exemplars exist only there)",
            f"Content-Type {content_type or 'none'}",
            "serve the registry with prometheus_client.exposition.choose_encoder(accept header).",
        )
    try:
        found: list[Exemplar] = exemplars(text, LATENCY_METRIC)
    except ValueError as exc:
        raise _fail(
            "a valid OpenMetrics exposition", f"unparsable: {exc}", "use choose_encoder."
        ) from None
    if not found or not any(e.trace_id for e in found):
        raise _fail(
            f"exemplars with a trace_id label on {LATENCY_METRIC}",
            f"{len(found)} exemplars" + (f", labels {dict(found[0].labels)}" if found else ""),
            "observe(latency, exemplar={'trace_id': format(ctx.trace_id, '032x')}) with the "
            "request span's context.",
        )
    ids = sorted({e.trace_id for e in found if e.trace_id})[:12]
    unknown = [tid for tid in ids if not state._fetch_one(tid)]
    if unknown:
        raise _fail(
            "every exemplar's trace id stored in Tempo",
            f"{len(unknown)} of {len(ids)} unknown to Tempo, e.g. {unknown[0]}",
            "take the trace id from the current span inside the request (not a fresh id), and "
            "make sure the traces are exported.",
        )


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# --- mutants: plausible wrong answers, each must fail the checks it aims at ------------------------
EXERCISE.mutant(
    "propagation_missing",
    description="the HTTP client is not instrumented: no traceparent, two disconnected traces",
    aims=["cross_service_trace"],
    replace={"RequestsInstrumentor().instrument(tracer_provider=gateway_provider)": "pass"},
)
EXERCISE.mutant(
    "orphan_spans",
    description="custom spans started in an empty context (as on a worker thread): orphan traces",
    aims=["custom_spans"],
    replace={
        'tracer.start_as_current_span("fetch_features")': (
            'tracer.start_as_current_span("fetch_features", context=otel_context.Context())'
        ),
        'tracer.start_as_current_span("model_inference")': (
            'tracer.start_as_current_span("model_inference", context=otel_context.Context())'
        ),
    },
)
EXERCISE.mutant(
    "wrong_exporter_port",
    description="the gRPC exporter pointed at Tempo's OTLP/HTTP port: nothing arrives",
    aims=["traces_arrive"],
    replace={'endpoint=stack.url("tempo_otlp_grpc")': 'endpoint=stack.url("tempo_otlp_http")'},
)
EXERCISE.mutant(
    "trace_id_not_in_logs",
    description="the log processor that adds trace_id/span_id is left out of structlog's chain",
    aims=["logs_carry_trace_id"],
    replace={"        add_trace_context,\n": ""},
)
