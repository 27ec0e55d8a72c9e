"""Capstone — the practical assessment: the module's acceptance criteria on ONE running system.

The student's capstone folder (what ``solutions/capstone/capstone.ipynb`` writes) is checked in
two parts. Static checks ask the tools about the files: ``observability.py`` imported in a process
of its own, the dashboard's panels, promtool on the rules, their tests and exercise 06's hidden
latency cases, amtool on the routing. The live checks share one run of the whole system,
started from the folder by :func:`graders.capstone_system.start_system` (time compressed 60x)
and driven through a baseline, drifted inputs and a latency spike
(:func:`graders.capstone_checks.run_live`, about 30-50 s, once per grade): metrics in Prometheus,
every dashboard panel with data, the grader's requests in Loki with trace ids and error lines,
a span for every service call in Tempo, the drift job on its schedule and its alert, and the
latency alert at its receiver, not before its ``for:``. Every failure names the exercise to revisit.

Run one submission: ``pytest graders/test_capstone_practical.py --notebook PATH`` or
``make grade EX=capstone``.
"""

from __future__ import annotations

import itertools
import statistics
from functools import cached_property
from pathlib import Path
from typing import Any

from graders import capstone_checks as cc
from graders import ex06_checks as ex06
from graders.context import GradingContext
from graders.errors import CheckFailed, GradingError
from graders.registry import Exercise
from lab_stack import promtool

__all__ = ["EXERCISE", "CapstoneState"]


def _fail(expected: str, found: str, exercise: str, hint: str) -> CheckFailed:
    return CheckFailed(expected=expected, found=found, hint=cc.revisit(exercise, hint))


class CapstoneState:
    """The submission's folder and, computed once and lazily, the live run of its system."""

    def __init__(self, ctx: GradingContext) -> None:
        self.ctx = ctx
        self.folder = Path(ctx.workdir)
        self.rules_path = self.folder / "alert_rules.yml"
        self.tests_path = self.folder / "rule_tests.yml"
        self.am_path = self.folder / "alertmanager.yml"

    @cached_property
    def rules(self) -> dict[str, dict[str, Any]]:
        """The student's alerting rules by name (a failure when promtool refuses the file)."""
        result = promtool.check_rules([self.rules_path], raise_on_error=False)
        if not self.rules_path.is_file() or not result.ok:
            raise _fail(
                "alert_rules.yml that promtool check rules accepts",
                result.output[-600:] if self.rules_path.is_file() else "no alert_rules.yml",
                "06",
                "run Step 5's promtool cell and fix the line it names.",
            )
        try:
            return ex06.alert_rules(self.rules_path)
        except GradingError as exc:
            raise _fail(
                "alert_rules.yml with groups of rules",
                str(exc).split(" Hint:")[0],
                "06",
                "write groups: - name: ... rules: - alert: ... as in exercise 06.",
            ) from None

    @cached_property
    def live(self) -> cc.CapstoneRun:
        """The one live run of the system (started from the folder)."""
        return cc.run_live(self.ctx.stack, self.folder)

    def started(self) -> cc.CapstoneRun:
        """The live run, or a failure saying why the system did not start."""
        run = self.live
        if run.start_error:
            raise _fail(
                "the capstone system to start from the folder (gateway, feature service, rules, "
                "Alertmanager, drift job)",
                run.start_error,
                "02",
                "run every cell of the notebook; observability.instrument(...) must return the "
                "two Hooks without raising (exercises 02-04), and drift_job.py must start.",
            )
        if run.error:
            raise _fail(
                "the grader's traffic to reach the system",
                run.error,
                "02",
                "the gateway must answer POST /predict while instrumented; run Step 3 and look "
                "at its output.",
            )
        return run

    @cached_property
    def log_lines(self) -> dict[str, dict[str, Any]]:
        """The system's JSON log lines found in Loki, by request id."""
        return cc.log_lines(self.ctx.stack, self.started())


EXERCISE = Exercise(
    number="capstone",
    folder="capstone",
    notebook="capstone.ipynb",
    title="Capstone: one observable ML system, end to end",
    state=CapstoneState,
    cell_timeout=240.0,
    total_timeout=480.0,
    shares_stack=False,
)


# --- the files ----------------------------------------------------------------------------------
@EXERCISE.check(points=2, title="observability.py imports cleanly; instrument() has the signature")
def test_observability_module(state: CapstoneState) -> None:
    """Importing the module has no side effects; instrument(service, *, registry, log_path, otlp_endpoint)."""
    problems = cc.module_problems(cc.inspect_module(state.folder))
    if problems:
        raise _fail(
            "an importable observability.py with "
            "instrument(service, *, registry, log_path, otlp_endpoint)",
            "; ".join(problems),
            "04",
            "build providers, loggers and metrics inside instrument(), never at import (the "
            "providers of exercise 04, the logger of exercise 03, the metrics of exercise 02).",
        )


@EXERCISE.check(
    points=2, title="The dashboard has rate, p50/p95/p99, errors, GPU panels, per service"
)
def test_dashboard_panels(state: CapstoneState) -> None:
    """dashboard.json shows prediction rate, p50/p95/p99, error rate, GPU utilisation and memory."""
    problems = cc.dashboard_problems(state.folder / "dashboard.json")
    if problems:
        raise _fail(
            "panels for " + ", ".join(cc.DASHBOARD_SIGNALS) + ", each query selecting "
            'service="$service"',
            "; ".join(problems),
            "06",
            "the latency and rate panels are exercise 02's, the GPU panels (DCGM_FI_DEV_GPU_UTIL, "
            "DCGM_FI_DEV_FB_USED/FREE) exercise 06's infrastructure dashboard.",
        )


@EXERCISE.check(points=2, title="The alert rules: latency, errors, GPU, drift, data quality")
def test_alert_rules(state: CapstoneState) -> None:
    """promtool accepts the rules; the five alerts exist with metadata; p99 > 1 s for 5m; runbooks."""
    problems = cc.rule_problems(state.rules, state.folder)
    if problems:
        raise _fail(
            "HighPredictionLatency (p99 > 1 s, for: 5m, warning), HighErrorRate (critical), "
            "GPUMemoryWillExhaust, DataDriftDetected and DataQualityIncident, each with severity, "
            "summary, description and a runbook",
            "; ".join(problems[:8]),
            "06",
            "copy your exercise 06 rules, add exercise 05's drift alerts on ml_dataset_drift and "
            "ml_data_quality_incident, and write runbooks/<name>.md for each runbook_url.",
        )


@EXERCISE.check(points=2, title="rule_tests.yml proves the latency alert's 5 minutes (promtool)")
def test_latency_rule_tests(state: CapstoneState) -> None:
    """promtool test rules passes and tests HighPredictionLatency both firing and not firing."""
    if not state.tests_path.is_file():
        raise _fail("rule_tests.yml", "no file", "06", "write promtool unit tests (Task 3).")
    result = promtool.test_rules([state.tests_path])
    if not result.ok:
        raise _fail(
            "promtool test rules rule_tests.yml to pass",
            result.output[-700:],
            "06",
            "read the FAILED blocks (exp vs got, at which eval_time) in Step 5's output.",
        )
    gaps = ex06.rule_tests_coverage(state.tests_path, alerts=("HighPredictionLatency",))
    if gaps:
        raise _fail(
            "a test where HighPredictionLatency must not fire yet and one where it fires",
            "; ".join(gaps),
            "06",
            "add alert_rule_test entries before (quiet) and after (firing) the 5-minute boundary.",
        )


@EXERCISE.check(
    points=2, title="Hidden promtool cases: latency (for: boundary, one-minute burst)", hidden=True
)
def test_hidden_latency(state: CapstoneState) -> None:
    """HighPredictionLatency fires after 5 minutes of p99 > 1 s, never on a one-minute burst."""
    rules = state.rules
    if "HighPredictionLatency" not in rules:
        raise _fail("an alert HighPredictionLatency", "none", "06", "name the alert exactly.")
    problems = cc.hidden_latency_problems(rules)
    if problems:
        raise _fail(
            "the reference's firing times on the hidden latency series",
            " | ".join(problems),
            "06",
            "p99 (histogram_quantile(0.99, sum by (service, le) (rate(..._bucket[2m])))) > 1 "
            "with for: 5m; a long rate window stretches a one-minute burst past for:.",
        )


@EXERCISE.check(points=1, title="amtool accepts alertmanager.yml; severities reach their receivers")
def test_alertmanager_routing(state: CapstoneState) -> None:
    """The rendered config passes amtool; critical -> pager + slack-ml, warning -> slack-ml + team-email."""
    if not state.am_path.is_file():
        raise _fail("alertmanager.yml", "no file", "06", "write it with %%writefile (Step 6).")
    rendered = state.folder / "alertmanager.rendered.yml"
    rendered.write_text(
        ex06.render_alertmanager_config(
            state.am_path.read_text(), ex06.sink_addresses(state.ctx.stack)
        )
    )
    result = promtool.check_alertmanager_config(rendered, raise_on_error=False)
    if not result.ok:
        raise _fail(
            "amtool check-config to accept alertmanager.yml",
            result.output[-600:],
            "06",
            "fix what amtool names (indentation, matchers, receiver names).",
        )
    wrong = []
    for severity in ("critical", "warning"):
        want = tuple(sorted(ex06.SEVERITY_RECEIVERS[severity]))
        labels = {"alertname": "Probe", "service": "capstone", "severity": severity}
        got = ex06.routes_for(rendered, labels)
        if got != want:
            wrong.append(f"severity={severity} -> {list(got)}, want {list(want)}")
    if wrong:
        raise _fail(
            "critical to pager and slack-ml, warning to slack-ml and team-email",
            "; ".join(wrong),
            "06",
            "two routes per severity, the first with continue: true.",
        )


# --- the live system -----------------------------------------------------------------------------
@EXERCISE.check(points=2, title="Metrics at the gateway's /metrics and in Prometheus")
def test_metrics_live(state: CapstoneState) -> None:
    """/metrics serves exercise 02's metrics; Prometheus counted the grader's requests by status."""
    run = state.started()
    problems = [
        f"/metrics has no {name}"
        for name in ("ml_predictions_total", "ml_prediction_duration_seconds_bucket")
        if name not in run.metrics_text
    ]
    counted = sum(run.prom_by_status.values())
    if counted < 0.9 * run.baseline_sent:
        problems.append(
            f"Prometheus counts {counted:g} predictions for service={run.service!r}, the grader "
            f"sent {run.baseline_sent}"
        )
    for status in ("success", "error"):
        if run.prom_by_status.get(status, 0) <= 0:
            problems.append(f'no ml_predictions_total{{status="{status}"}} > 0')
    if problems:
        raise _fail(
            "ml_predictions_total{model_name, model_version, status} and the "
            "ml_prediction_duration_seconds histogram, counted per request",
            "; ".join(problems),
            "02",
            "count every prediction in on_prediction with its status label, and serve your "
            "registry at /metrics in an on_create hook.",
        )


@EXERCISE.check(points=2, title="Every dashboard panel returns data for the system's service")
def test_dashboard_data(state: CapstoneState) -> None:
    """With $service set to the system's name, every panel's query returns data from Prometheus."""
    static = cc.dashboard_problems(state.folder / "dashboard.json")
    run = state.started()
    if static or run.dashboard_problems:
        raise _fail(
            "data in every panel of dashboard.json with service set to the running system",
            "; ".join((static + run.dashboard_problems)[:5]),
            "01",
            "run each panel's query in Prometheus with your service's name (and <name>-gpu for "
            "the GPU source): metric and label names as in exercises 02 and 06.",
        )


@EXERCISE.check(points=3, title="Logs in Loki: the grader's request ids, trace ids, error lines")
def test_logs_in_loki(state: CapstoneState) -> None:
    """LogQL finds a JSON line per request with its trace_id, and a level=error line per failure."""
    run = state.started()
    lines = state.log_lines
    records = run.baseline_records
    found = [r for r in records if r.request_id in lines]
    problems = []
    if len(found) < 0.9 * len(records):
        problems.append(
            f"{len(found)} of the grader's {len(records)} request ids are in Loki "
            f'({{job="services"}} | json | service="{run.service}")'
        )
    no_trace = [
        r.request_id
        for r in found
        if not cc._HEX32.match(str(lines[r.request_id].get("trace_id", "")))
    ]
    if no_trace:
        problems.append(f"{len(no_trace)} lines without a 32-hex trace_id (e.g. {no_trace[0]})")
    failed = [r for r in found if r.status == "error"]
    not_error = [r.request_id for r in failed if lines[r.request_id].get("level") != "error"]
    if not failed and found:
        problems.append("no line for the grader's failed requests")
    elif not_error:
        problems.append(f"{len(not_error)} failed requests logged without level=error")
    no_features = [
        r.request_id
        for r in found
        if r.status == "success" and not isinstance(lines[r.request_id].get("features"), dict)
    ]
    if no_features:
        problems.append(f"{len(no_features)} prediction lines without the features object")
    if problems:
        raise _fail(
            "one JSON line per prediction in the log file, with service, request_id, trace_id, "
            "level (error for failures) and features",
            "; ".join(problems),
            "04" if no_trace and len(problems) == 1 else "03",
            "log in on_prediction through a structlog processor chain that adds the trace ids "
            "(exercise 04, task 2); a failed prediction is an error line.",
        )


@EXERCISE.check(points=3, title="Traces in Tempo: a span for every service call")
def test_traces_complete(state: CapstoneState) -> None:
    """Each sampled prediction's trace has the gateway, fetch client, feature service and inference spans."""
    run = state.started()
    trace_ids = cc.trace_ids_of(run, state.log_lines)
    if not trace_ids:
        raise _fail(
            "the trace id of the grader's requests (in the log line or a traceresponse header)",
            "none",
            "04",
            "add trace_id to every log line (a structlog processor reading the current span).",
        )
    problems = []
    for trace_id in trace_ids:
        spans = cc.fetch_spans(state.ctx.stack, trace_id, run.service)
        missing = cc.trace_problems(spans, run.service) if spans else ["not in Tempo"]
        if missing:
            problems.append(f"trace {trace_id}: {'; '.join(missing)}")
    if problems:
        raise _fail(
            "in each trace: the gateway's SERVER span, a CLIENT span for the feature fetch, the "
            "feature service's SERVER span as its child, and a model_inference span",
            " | ".join(problems[:2]),
            "04",
            "FastAPIInstrumentor on both apps with your own providers, a CLIENT span around "
            "fetch_features with traceparent injected (outgoing_headers), a span around inference.",
        )


@EXERCISE.check(points=2, title="The drift job runs on its schedule and pushes its results")
def test_drift_scheduled(state: CapstoneState) -> None:
    """Several decisions at the compressed interval; the last-success timestamp advances in Prometheus."""
    run = state.started()
    made = cc.decisions(run)
    problems = []
    if len(made) < 3:
        problems.append(
            f"{len(made)} decision line(s) in about {max(0.0, (made[-1]['ts'] - run.started) if made else 0):.0f} s "
            f"(every {cc.DRIFT_EVERY_S:g} s expected); other output: {run.drift_output[-3:]}"
        )
    else:
        gaps = [b["ts"] - a["ts"] for a, b in itertools.pairwise(made)]
        median = statistics.median(gaps)
        if not 0.5 * cc.DRIFT_EVERY_S <= median <= 3 * cc.DRIFT_EVERY_S:
            problems.append(f"runs {median:.1f} s apart, asked for --every {cc.DRIFT_EVERY_S:g}")
    decided = [d for d in made if not d.get("skipped")]
    if made and not decided:
        problems.append("every run skipped the window")
    if len(run.push_timestamps) < 2:
        problems.append(
            "ml_drift_job_last_success_timestamp_seconds of the job (grouping key "
            f"service={run.service}) took {len(run.push_timestamps)} value(s) in Prometheus"
        )
    if problems:
        raise _fail(
            f"drift_job.py --every {cc.DRIFT_EVERY_S:g} to decide and push every run, printing "
            "one JSON line per decision",
            "; ".join(problems),
            "05",
            "loop: read the window, decide, push_to_gateway(job='ml_drift_job', "
            "grouping_key={'service': NAME}), print the decision, sleep until the next run.",
        )


@EXERCISE.check(points=2, title="Drifted inputs: the job flags drift and DataDriftDetected fires")
def test_drift_alert(state: CapstoneState) -> None:
    """During the covariate-drift traffic a decision says drift and DataDriftDetected fires."""
    run = state.started()
    flagged = [
        d for d in cc.decisions(run) if d.get("drift") is True and d["ts"] >= run.drift_started
    ]
    problems = []
    if not flagged:
        problems.append(
            "no decision with drift: true during the drifted traffic (last: "
            f"{cc.decisions(run)[-1:] or run.drift_output[-2:]})"
        )
    if run.firing("DataDriftDetected") is None:
        problems.append(f"DataDriftDetected never fired for service={run.service}")
    if problems:
        raise _fail(
            "the drift job to flag the drifted inputs and DataDriftDetected to fire on its push",
            "; ".join(problems),
            "05",
            "push ml_dataset_drift with the grouping key service=NAME, and alert on "
            "max by (service) (ml_dataset_drift) == 1.",
        )


@EXERCISE.check(
    points=3, title="Latency spike: HighPredictionLatency reaches its receiver, after for:"
)
def test_latency_alert_live(state: CapstoneState) -> None:
    """The compressed HighPredictionLatency fires during the spike, not before its for:, and is notified."""
    run = state.started()
    fired = run.firing("HighPredictionLatency")
    want_for = 300.0 / cc.FACTOR
    problems = []
    if run.latency_for_s < want_for:
        problems.append(
            f"its for: is {run.latency_for_s * cc.FACTOR:g}s (compressed {run.latency_for_s:g}s), "
            "not 5m"
        )
    if fired is None:
        problems.append("it never fired during the spike")
    elif run.spike_started and fired - run.spike_started < 0.8 * want_for:
        problems.append(
            f"it fired {fired - run.spike_started:.1f} s into the spike, before its compressed "
            f"for: of {want_for:g} s"
        )
    if fired is not None and not run.notified("HighPredictionLatency"):
        problems.append("no receiver got a notification of it")
    if problems:
        raise _fail(
            f"HighPredictionLatency for service={run.service} firing {want_for:g} s (5m compressed "
            "60x) into the latency spike and reaching slack-ml / team-email",
            "; ".join(problems),
            "06",
            "p99 over a 2m window > 1 with for: 5m and severity warning, routed by severity.",
        )


# --- mutants -------------------------------------------------------------------------------------
EXERCISE.mutant(
    "no_inference_span",
    description="the model call runs without a span: the trace cannot show where the time went",
    aims=["traces_complete"],
    replace={
        '        with tracer.start_as_current_span("model_inference") as span:\n'
        '            span.set_attribute("model.name", MODEL_NAME)\n'
        '            span.set_attribute("model.version", MODEL_VERSION)\n'
        "            prediction = infer(features)\n"
        '            span.set_attribute("prediction.score", float(prediction.probability))\n'
        "            return prediction\n": "        return infer(features)\n"
    },
)
EXERCISE.mutant(
    "logs_without_trace_id",
    description="the structlog chain lacks the trace-context processor: no trace_id in the lines",
    aims=["logs_in_loki"],
    replace={"            add_trace_context,\n": ""},
)
EXERCISE.mutant(
    "latency_for_missing",
    description="HighPredictionLatency without for: 5m — a single slow scrape pages",
    aims=["alert_rules", "hidden_latency", "latency_alert_live"],
    replace={"          ) > 1\n        for: 5m\n": "          ) > 1\n"},
)
EXERCISE.mutant(
    "latency_p50",
    description="the latency alert watches the median, not the p99",
    aims=["alert_rules", "hidden_latency"],
    replace={
        "          histogram_quantile(0.99,\n": "          histogram_quantile(0.5,\n",
    },
)
EXERCISE.mutant(
    "dashboard_without_gpu",
    description="the dashboard has no GPU utilisation and memory panels",
    aims=["dashboard_panels"],
    replace={
        '        timeseries("GPU utilisation", [(f"avg by (gpu) (DCGM_FI_DEV_GPU_UTIL{{{gpu}}})", '
        '"GPU {{gpu}}")],\n'
        '                   unit="percent", x=12, y=8),\n'
        '        timeseries("GPU memory", [(f"sum by (gpu) (DCGM_FI_DEV_FB_USED{{{gpu}}})", '
        '"used {{gpu}}"),\n'
        '                                  (f"sum by (gpu) (DCGM_FI_DEV_FB_FREE{{{gpu}}})", '
        '"free {{gpu}}")],\n'
        '                   unit="decmbytes", x=0, y=16),\n': "",
    },
)
EXERCISE.mutant(
    "drift_job_runs_once",
    description="the drift job decides once and exits: no schedule",
    aims=["drift_scheduled", "drift_alert"],
    replace={"        if args.once:\n            return 0\n": "        return 0\n"},
)
EXERCISE.mutant(
    "drift_job_never_pushes",
    description="the drift job decides and prints, but never pushes to the Pushgateway",
    aims=["drift_scheduled", "drift_alert"],
    replace={
        "    push(pushgateway, service, decision, shares, drifted_by_feature, extra)\n": "",
    },
)
