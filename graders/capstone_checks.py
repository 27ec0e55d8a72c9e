"""Capstone — the check logic: the student's files, then ONE live run of their whole system.

The grader module ``graders/test_capstone_practical.py`` wires these into checks; every failure
names the exercise to revisit (:func:`revisit`).

* Static checks ask the tools about the files the notebook wrote: the module
  ``observability.py`` is imported in a *separate* Python process (:func:`inspect_module`: no side
  effects at import, the signature of ``instrument``), the dashboard's panels are matched against
  the signals it must show (:func:`dashboard_problems`), the rules go through promtool and the
  hidden latency cases of exercise 06 (:func:`graders.ex06_checks.judge_cases`), the Alertmanager
  configuration through amtool.
* The live run (:func:`run_live`) starts the system from the folder with
  :func:`graders.capstone_system.start_system` (time compressed by :data:`FACTOR`), sends a
  baseline (healthy traffic with a few failed lookups), then drifted inputs and, a few seconds
  later, a latency spike, while :func:`graders.ex06_checks.poll_alerts` records what Prometheus,
  Alertmanager and the sinks show. It keeps what each live check needs (:class:`CapstoneRun`) and
  ends as soon as both alerts have their evidence, in about 30-50 s.

Example:
    >>> revisit("04", "every service call needs a span.")
    'revisit exercise 04 (tracing): every service call needs a span.'
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from graders import ex06_checks as ex06
from graders.errors import GradingError
from lab_stack import Stack, dashboards
from lab_stack.clients.loki import lines as loki_lines

__all__ = [
    "ALERTS",
    "DASHBOARD_SIGNALS",
    "DRIFT_EVERY_S",
    "DRIFT_WINDOW_S",
    "EXERCISES",
    "FACTOR",
    "CapstoneRun",
    "dashboard_problems",
    "inspect_module",
    "log_lines",
    "revisit",
    "rule_problems",
    "run_live",
    "trace_problems",
]

#: What each exercise taught, for the "revisit" hints.
EXERCISES = {
    "01": "exercise 01 (stack and dashboards)",
    "02": "exercise 02 (metrics)",
    "03": "exercise 03 (logging)",
    "04": "exercise 04 (tracing)",
    "05": "exercise 05 (drift)",
    "06": "exercise 06 (alerting)",
}
#: Time compression of the live run: ``for: 5m`` -> 5 s, ``[2m]`` -> 2 s.
FACTOR = 60.0
#: The drift job's schedule in the live run.
DRIFT_EVERY_S = 2.0
DRIFT_WINDOW_S = 20.0
#: The alerts of the capstone: name -> the severity it must carry (None: any severity).
ALERTS: dict[str, str | None] = {
    "HighPredictionLatency": "warning",
    "HighErrorRate": "critical",
    "GPUMemoryWillExhaust": None,
    "DataDriftDetected": None,
    "DataQualityIncident": None,
}
#: What each alert's expression must be about.
ALERT_METRICS = {
    "HighPredictionLatency": r"ml_prediction_duration_seconds_bucket",
    "HighErrorRate": r"ml_predictions_total",
    "GPUMemoryWillExhaust": r"predict_linear\s*\(\s*DCGM_FI_DEV_FB_(FREE|USED)",
    "DataDriftDetected": r"ml_dataset_drift",
    "DataQualityIncident": r"ml_data_quality_incident",
}
#: The panels the dashboard must have: signal -> pattern some Prometheus query must match.
DASHBOARD_SIGNALS = {
    "prediction rate": r"rate\s*\(\s*ml_predictions_total",
    "p50 latency": r"histogram_quantile\s*\(\s*0?\.50?\s*,[\s\S]*ml_prediction_duration_seconds_bucket",
    "p95 latency": r"histogram_quantile\s*\(\s*0?\.95\s*,[\s\S]*ml_prediction_duration_seconds_bucket",
    "p99 latency": r"histogram_quantile\s*\(\s*0?\.99\s*,[\s\S]*ml_prediction_duration_seconds_bucket",
    "error rate": r"ml_predictions_total\s*\{[^}]*status\s*=~?\s*\"error\"",
    "GPU utilisation": r"DCGM_FI_DEV_GPU_UTIL",
    "GPU memory": r"DCGM_FI_DEV_FB_(USED|FREE)",
}
_SERVICE_VAR = re.compile(r"\$\{?service\b")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")


def revisit(exercise: str, text: str) -> str:
    """A hint that names the exercise to go back to."""
    return f"revisit {EXERCISES[exercise]}: {text}"


# --- observability.py, imported in a process of its own -----------------------------------------
_INSPECT = r"""
import inspect, json, sys, threading
from pathlib import Path
folder = Path(sys.argv[1])
sys.path.insert(0, str(folder))
before_files = {p.name for p in folder.iterdir()}
before_threads = threading.active_count()
out = {"error": None}
try:
    import observability
except BaseException as exc:
    out["error"] = f"{type(exc).__name__}: {exc}"
else:
    from opentelemetry import trace
    fn = getattr(observability, "instrument", None)
    out["has_instrument"] = callable(fn)
    if callable(fn):
        sig = inspect.signature(fn)
        out["params"] = [[p.name, p.kind.name] for p in sig.parameters.values()]
    out["new_files"] = sorted({p.name for p in folder.iterdir()} - before_files - {"__pycache__"})
    out["new_threads"] = threading.active_count() - before_threads
    out["global_provider"] = type(trace.get_tracer_provider()).__name__
    if callable(fn):
        import tempfile
        from prometheus_client import CollectorRegistry
        from ml_service.hooks import Hooks
        with tempfile.TemporaryDirectory() as tmp:
            try:
                hooks = fn("capstone-inspect", registry=CollectorRegistry(),
                           log_path=Path(tmp) / "inspect.log",
                           otlp_endpoint="http://127.0.0.1:9/v1/traces")
            except BaseException as exc:
                out["call_error"] = f"{type(exc).__name__}: {exc}"
            else:
                out["returns"] = [type(h).__name__ for h in hooks] if isinstance(hooks, tuple) \
                    else type(hooks).__name__
                out["returns_hooks"] = isinstance(hooks, tuple) and len(hooks) == 2 and all(
                    isinstance(h, Hooks) for h in hooks)
print("INSPECT " + json.dumps(out))
"""


def inspect_module(folder: Path, *, timeout_s: float = 60.0) -> dict[str, Any]:
    """Import ``folder/observability.py`` in a fresh Python process; what the import did.

    Returns ``error`` (the import's exception, or None), ``has_instrument``, ``params``
    (``[name, kind]`` of ``instrument``), ``new_files``, ``new_threads``, ``global_provider``
    (all measured right after the import), then what calling ``instrument`` with a fresh registry
    and a scratch log gave: ``call_error`` or ``returns`` / ``returns_hooks``.
    """
    if not (folder / "observability.py").is_file():
        return {"error": "no observability.py in the folder"}
    proc = subprocess.run(
        [sys.executable, "-c", _INSPECT, str(folder)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=folder,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("INSPECT "):
            found: dict[str, Any] = json.loads(line.removeprefix("INSPECT "))
            return found
    return {"error": f"the import exited with code {proc.returncode}: {proc.stderr[-600:]}"}


def module_problems(found: Mapping[str, Any]) -> list[str]:
    """What is wrong with the module as :func:`inspect_module` saw it (empty when right)."""
    if found.get("error"):
        return [f"importing observability.py failed: {found['error']}"]
    if not found.get("has_instrument"):
        return ["observability.py defines no function instrument"]
    problems = []
    params = {name: kind for name, kind in found.get("params") or []}
    names = list(params)
    if not names or params[names[0]] not in ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD"):
        problems.append("instrument's first parameter must be the service name, positional")
    for name in ("registry", "log_path", "otlp_endpoint"):
        if params.get(name) != "KEYWORD_ONLY":
            problems.append(f"instrument needs the keyword-only parameter {name}")
    if found.get("new_files"):
        problems.append(f"importing it wrote {found['new_files']} (no side effects at import)")
    if int(found.get("new_threads") or 0) > 0:
        problems.append(f"importing it started {found['new_threads']} thread(s)")
    if found.get("call_error"):
        problems.append(f"instrument(...) raised {found['call_error']}")
    elif not found.get("returns_hooks"):
        problems.append(
            f"instrument(...) returned {found.get('returns')!r}, not (gateway Hooks, feature Hooks)"
        )
    if found.get("global_provider") not in (None, "ProxyTracerProvider"):
        problems.append(
            f"importing it set the global tracer provider ({found['global_provider']}); "
            "make a TracerProvider of your own inside instrument()"
        )
    return problems


# --- dashboard.json -----------------------------------------------------------------------------
def prometheus_exprs(board: dashboards.Dashboard) -> list[tuple[str, str]]:
    """``(panel title, expr)`` of every visible Prometheus query of the dashboard."""
    out = []
    for panel in board.panels:
        for target in panel.targets:
            if target.expr and not target.hide:
                out.append((panel.title, target.expr))
    return out


def dashboard_problems(path: Path) -> list[str]:
    """The signals the dashboard lacks and its queries that ignore ``$service``."""
    if not path.is_file():
        return ["no dashboard.json in the folder"]
    try:
        board = dashboards.load(path)
    except Exception as exc:  # a DashboardError or JSON error: the student's words
        return [f"dashboard.json does not load: {str(exc)[:300]}"]
    problems = [f"{p.panel}: {p.field}: {p.message}" for p in dashboards.validate(board)][:3]
    exprs = prometheus_exprs(board)
    missing = [
        signal
        for signal, pattern in DASHBOARD_SIGNALS.items()
        if not any(re.search(pattern, expr) for _, expr in exprs)
    ]
    if missing:
        problems.append(f"no panel query for {', '.join(missing)}")
    unscoped = sorted({title for title, expr in exprs if not _SERVICE_VAR.search(expr)})
    if unscoped:
        problems.append(
            f"panels {unscoped} do not select the $service variable (one service's dashboard "
            "would show every service)"
        )
    if not any(v.name == "service" for v in board.variables):
        problems.append("no template variable named service")
    return problems


# --- alert_rules.yml ----------------------------------------------------------------------------
def rule_problems(rules: Mapping[str, Mapping[str, Any]], folder: Path) -> list[str]:
    """Missing alerts, metadata, runbooks and the shape of the latency alert (empty when right)."""
    problems = []
    for name, severity in ALERTS.items():
        rule = rules.get(name)
        if rule is None:
            problems.append(f"no alert {name}")
            continue
        labels, notes = rule.get("labels") or {}, rule.get("annotations") or {}
        if not labels.get("severity") or (severity and labels.get("severity") != severity):
            problems.append(
                f"{name}: severity {labels.get('severity')!r}, want {severity or 'one'}"
            )
        for key in ("summary", "description", "runbook_url"):
            if not str(notes.get(key, "")).strip():
                problems.append(f"{name}: no {key} annotation")
        if not re.search(ALERT_METRICS[name], str(rule.get("expr", ""))):
            problems.append(f"{name}: its expr does not use {ALERT_METRICS[name]}")
    latency = rules.get("HighPredictionLatency")
    if latency is not None:
        expr = " ".join(str(latency.get("expr", "")).split())
        if not re.search(r"histogram_quantile\s*\(\s*0?\.99\s*,", expr):
            problems.append("HighPredictionLatency: not the p99 (histogram_quantile(0.99, ...))")
        if not re.search(r"\)\s*>=?\s*1(\.0*)?\s*$", expr):
            problems.append("HighPredictionLatency: the threshold is not > 1 (second)")
        for_s = ex06.parse_duration(str(latency.get("for") or "0s"))
        if for_s != 300:
            problems.append(f"HighPredictionLatency: for: {latency.get('for')!r}, want 5m")
    present = {n: r for n, r in rules.items() if n in ALERTS}
    problems += ex06.runbook_problems(present, folder)
    return problems


def hidden_latency_problems(rules: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Exercise 06's hidden latency cases (for: boundary, one-minute burst) on the student's rule."""
    return ex06.judge_cases(ex06.hidden_cases("latency_"), rules)


# --- the live run -------------------------------------------------------------------------------
@dataclass
class CapstoneRun:
    """What one live run of the student's system left for the live checks."""

    service: str
    started: float = 0.0
    start_error: str | None = None
    error: str | None = None
    #: the gateway's /metrics text after the baseline
    metrics_text: str = ""
    #: Prometheus: predictions by status for the service after the baseline
    prom_by_status: dict[str, float] = field(default_factory=dict)
    baseline_sent: int = 0
    baseline_records: list[Any] = field(default_factory=list)
    dashboard_problems: list[str] = field(default_factory=list)
    drift_decisions: list[dict[str, Any]] = field(default_factory=list)
    drift_output: list[str] = field(default_factory=list)
    #: distinct values of ml_drift_job_last_success_timestamp_seconds seen in Prometheus
    push_timestamps: list[float] = field(default_factory=list)
    drift_started: float = 0.0
    spike_started: float = 0.0
    spike_ended: float = 0.0
    latency_for_s: float = 0.0
    alerts: ex06.LiveRun | None = None

    def firing(self, alertname: str) -> float | None:
        """When ``alertname`` first fired for this run's service, or None."""
        return self.alerts.firing(alertname, self.service) if self.alerts else None

    def pending(self, alertname: str) -> float | None:
        """When ``alertname`` was first seen pending for this run's service, or None."""
        return self.alerts.first_pending.get((alertname, self.service)) if self.alerts else None

    def notified(self, alertname: str) -> list[Any]:
        """Notifications that name ``alertname`` and this run's service."""
        if self.alerts is None:
            return []
        return [
            n
            for n in self.alerts.notifications
            if alertname in ex06.note_text(n) and self.service in ex06.note_text(n)
        ]


def _prom_value(stack: Stack, expr: str) -> float | None:
    try:
        return stack.prometheus.query_value(expr)
    except Exception:
        return None


def _watch_pushes(stack: Stack, run: CapstoneRun, stop: threading.Event) -> None:
    expr = (
        f'max(ml_drift_job_last_success_timestamp_seconds{{job="ml_drift_job",'
        f'service="{run.service}"}})'
    )
    while not stop.is_set():
        value = _prom_value(stack, expr)
        if value is not None and value == value and value not in run.push_timestamps:
            run.push_timestamps.append(value)
        stop.wait(1.0)


def run_live(stack: Stack, folder: Path, *, deadline_s: float = 40.0) -> CapstoneRun:
    """Start the system of ``folder``, drive it through the scenarios and record the evidence.

    Never raises for the student's mistakes: a system that would not start leaves
    ``start_error``, a scenario that failed leaves ``error``; every live check then fails with it.
    """
    from graders.capstone_system import start_system
    from ml_service.traffic import Scenario, run_traffic

    run = CapstoneRun(service=f"capstone-{uuid.uuid4().hex[:8]}")
    run.alerts = ex06.LiveRun(started=time.time(), services={"system": run.service})
    stop = threading.Event()
    try:
        system_cm = start_system(
            folder,
            stack,
            service=run.service,
            factor=FACTOR,
            drift_every_s=DRIFT_EVERY_S,
            drift_window_s=DRIFT_WINDOW_S,
        )
        system = system_cm.__enter__()
    except Exception as exc:
        run.start_error = f"{type(exc).__name__}: {str(exc)[:1200]}"
        return run
    threads = [
        threading.Thread(target=ex06.poll_alerts, args=(stack, run.alerts, stop), daemon=True),
        threading.Thread(target=_watch_pushes, args=(stack, run, stop), daemon=True),
    ]
    try:
        run.started = time.time()
        for thread in threads:
            thread.start()
        # 1. Baseline: healthy traffic, 4% failed feature lookups (below HighErrorRate's 5%).
        baseline = run_traffic(
            system.gateway_url,
            scenario=Scenario.named("error_burst", start=0.0, end=1.0, error_rate=0.04),
            rate=30,
            duration_s=6.0,
            gpu_url=system.gpu_url,
            seed=11,
        )
        run.baseline_sent, run.baseline_records = baseline.sent, list(baseline.records)
        with httpx.Client(timeout=5.0) as client:
            run.metrics_text = client.get(f"{system.gateway_url}/metrics").text
        # 2. Drifted inputs (the drift job must flag them) and, 4 s later, a latency spike.
        shifts = {
            "amount": "large",
            "merchant_category": "large",
            "distance_from_home_km": "large",
            "device_age_days": "large",
            "hour": "small",
            "channel": "small",
        }
        drift_scenario = Scenario.named("covariate_drift", start=0.0, end=1.0, shifts=shifts)
        spike = Scenario.named("latency_spike", start=0.0, end=1.0, delay_s=1.5)
        failures: list[str] = []

        def drive(delay_s: float, **kwargs: Any) -> None:
            time.sleep(delay_s)
            try:
                if kwargs["scenario"] is spike:
                    run.spike_started = time.time()
                else:
                    run.drift_started = time.time()
                run_traffic(system.gateway_url, gpu_url=system.gpu_url, **kwargs)
                if kwargs["scenario"] is spike:
                    run.spike_ended = time.time()
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")

        drivers = [
            threading.Thread(
                target=drive,
                args=(0.0,),
                kwargs={"scenario": drift_scenario, "rate": 25, "duration_s": 30.0, "seed": 12},
                daemon=True,
            ),
            threading.Thread(
                target=drive,
                args=(4.0,),
                kwargs={"scenario": spike, "rate": 8, "duration_s": 12.0, "seed": 13},
                daemon=True,
            ),
        ]
        for driver in drivers:
            driver.start()
        # Meanwhile: what Prometheus holds of the baseline, and the dashboard's panels.
        selector = f'ml_predictions_total{{service="{run.service}"}}'
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with_status = stack.prometheus.query_samples(f"sum by (status) ({selector})")
            run.prom_by_status = {s.metric.get("status", ""): s.value for s in with_status}
            if sum(run.prom_by_status.values()) >= 0.9 * run.baseline_sent:
                break
            time.sleep(0.5)
        if (folder / "dashboard.json").is_file():
            try:
                board_run = dashboards.run(
                    folder / "dashboard.json",
                    stack=stack,
                    window=120.0,
                    variables={"service": run.service},
                )
                run.dashboard_problems = board_run.problems()
            except Exception as exc:
                run.dashboard_problems = [f"the dashboard could not be run: {str(exc)[:300]}"]
        latency_rule = ex06.alert_rules(folder / "alert_rules.yml").get("HighPredictionLatency")
        run.latency_for_s = (
            ex06.parse_duration(str(latency_rule.get("for") or "0s")) / FACTOR
            if latency_rule
            else 0.0
        )
        # 3. Until both alerts have their evidence (or the deadline).
        # The solution's drift alert fires ~15 s into the drifted traffic, its latency alert is
        # notified ~8 s into the spike: give either twice that before calling it missing.
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            now = time.time()
            drift_done = run.firing("DataDriftDetected") or now > run.drift_started + 30
            latency_done = run.notified("HighPredictionLatency") or (
                run.spike_ended and now > run.spike_ended + 10
            )
            if drift_done and latency_done:
                break
            time.sleep(0.5)
        if failures:
            run.error = "; ".join(failures)[:600]
        run.drift_decisions = system.drift_decisions()
        run.drift_output = system.drift_output()
    except Exception as exc:
        run.error = f"{type(exc).__name__}: {str(exc)[:600]}"
    finally:
        stop.set()
        for thread in threads:
            thread.join(5.0)
        try:
            system_cm.__exit__(None, None, None)
        except Exception as exc:
            run.error = run.error or f"stopping the system: {type(exc).__name__}: {exc}"
    return run


# --- logs and traces, after the run ---------------------------------------------------------------
def log_lines(stack: Stack, run: CapstoneRun, *, wait_s: float = 15.0) -> dict[str, dict[str, Any]]:
    """The system's JSON lines in Loki (``{job="services"} | json | service="..."``) by request id,
    polled until the baseline's requests are there or ``wait_s`` passed."""
    query = f'{{job="services"}} | json | service="{run.service}"'
    wanted = {r.request_id for r in run.baseline_records}
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + wait_s
    while True:
        data = stack.loki.query_range(query, start=run.started - 5, end=time.time() + 1, limit=5000)
        for line in loki_lines(data):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("request_id"):
                found[str(record["request_id"])] = record
        if len(wanted & set(found)) >= 0.95 * len(wanted) or time.monotonic() > deadline:
            return found
        time.sleep(1.0)


def _kind(span: Any) -> str:
    return str(span.kind).removeprefix("SPAN_KIND_").upper()


def _route(span: Any) -> str:
    attrs = span.attributes or {}
    return " ".join(
        str(x)
        for x in (
            span.name,
            attrs.get("http.route"),
            attrs.get("http.target"),
            attrs.get("url.path"),
        )
    )


def trace_problems(spans: Sequence[Any], service: str) -> list[str]:
    """What one prediction's trace lacks: a span for each service call (empty when complete)."""
    problems = []
    by_id = {s.span_id: s for s in spans}
    gateway = [s for s in spans if _kind(s) == "SERVER" and "/predict" in _route(s)]
    features = [s for s in spans if _kind(s) == "SERVER" and "/features" in _route(s)]
    clients = [s for s in spans if _kind(s) == "CLIENT"]
    inference = [
        s for s in spans if "infer" in s.name.lower() or "model.name" in (s.attributes or {})
    ]
    if not gateway:
        problems.append("no SERVER span of the gateway's POST /predict")
    elif gateway[0].service_name != service:
        problems.append(
            f"the gateway's span has service.name {gateway[0].service_name!r}, want {service!r}"
        )
    if not clients:
        problems.append("no CLIENT span for the call to the feature service")
    if not features:
        problems.append(
            "no SERVER span of the feature service (is the trace context propagated in the "
            "request headers, traceparent?)"
        )
    elif clients and not any(
        f.parent_span_id in by_id and _kind(by_id[f.parent_span_id]) == "CLIENT" for f in features
    ):
        problems.append(
            "the feature service's span is not a child of the feature fetch's CLIENT span"
        )
    if not inference:
        problems.append("no model inference span (name with 'inference')")
    return problems


def fetch_spans(stack: Stack, trace_id: str, service: str, *, wait_s: float = 8.0) -> list[Any]:
    """The trace's spans from Tempo (by id), waiting up to ``wait_s`` for every call's span."""
    from lab_stack.errors import NotFound

    deadline = time.monotonic() + wait_s
    spans: list[Any] = []
    while True:
        try:
            spans = stack.tempo.trace_spans(trace_id)
        except NotFound:
            spans = []
        complete = spans and not [
            p for p in trace_problems(spans, service) if "service.name" not in p
        ]
        if complete or time.monotonic() > deadline:
            return spans
        time.sleep(0.5)


def trace_ids_of(run: CapstoneRun, lines: Mapping[str, Mapping[str, Any]], n: int = 4) -> list[str]:
    """Trace ids of ``n`` successful baseline requests: from their log lines, else the response."""
    out = []
    for record in run.baseline_records:
        if record.status != "success":
            continue
        line = lines.get(record.request_id) or {}
        tid = str(line.get("trace_id") or record.trace_id or "")
        if _HEX32.match(tid):
            out.append(tid)
        if len(out) >= n:
            break
    return out


def decisions(run: CapstoneRun) -> list[dict[str, Any]]:
    """The drift job's decision lines (neither errors nor other output), in order."""
    return [d for d in run.drift_decisions if "ts" in d and "error" not in d]


def require_started(run: CapstoneRun) -> None:
    """Raise :class:`GradingError` (worded for the student) when the system never ran."""
    if run.start_error:
        raise GradingError(run.start_error)
