"""Exercise 02 — instrument the ML service with metrics: the checks, their points and the mutants.

Every verdict comes from Prometheus: the student's gateways are found among the scrape targets of
job ``ml-service`` (those listened on by the graded kernel), the grader drives its own traffic at
them with :func:`ml_service.traffic.run_traffic` and compares what Prometheus recorded, and what
the student's PromQL answers return, with the generator's ground truth.

Run one submission: ``pytest graders/test_ex02_metrics.py --notebook PATH`` or ``make grade EX=02``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from functools import cached_property
from urllib.parse import urlsplit

import httpx

from graders import ex02_checks
from graders.context import (
    GradingContext,
    owned_targets,
    promql_regex,
    recorded_answers,
    scope_query,
    target_metadata,
    wait_until,
)
from graders.errors import CheckFailed
from graders.registry import Exercise
from lab_stack import promtool
from lab_stack.clients import Sample, Target
from ml_service.traffic import GroundTruth, Scenario, run_traffic

__all__ = ["ANSWERS_FILE", "EXERCISE", "EXPECTED", "JOB", "Ex02State"]

#: The scrape job the exercise asks the student to register the gateways under.
JOB = "ml-service"
#: Where the notebook's ``graders.record_answers("02", ...)`` cell writes the PromQL answers.
ANSWERS_FILE = "answers_ex02.json"
#: Metric name → (type, label names besides job/instance/le).
EXPECTED: dict[str, tuple[str, frozenset[str]]] = {
    "ml_predictions_total": ("counter", frozenset({"model_name", "model_version", "status"})),
    "ml_prediction_duration_seconds": ("histogram", frozenset({"model_name"})),
    "ml_prediction_confidence": ("histogram", frozenset({"model_name"})),
    "ml_requests_in_flight": ("gauge", frozenset()),
    "ml_gpu_utilization_ratio": ("gauge", frozenset()),
}
QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
ANSWER_KEYS = ("rate_by_status", "p50", "p95", "p99", "error_ratio")
MAX_LABEL_VALUES = 20
SLO_SECONDS = 1.0
_STRUCTURAL = {"__name__", "job", "instance", "le", "quantile"}


def _fail(expected: str, found: str, hint: str) -> CheckFailed:
    return CheckFailed(expected=expected, found=found, hint=hint)


class Ex02State:
    """What the checks look at, computed once and lazily (traffic only when a check needs it)."""

    def __init__(self, ctx: GradingContext) -> None:
        self.ctx = ctx
        self.prom = ctx.stack.prometheus
        self._lock = threading.Lock()

    # --- targets and metadata ------------------------------------------------------------------
    @cached_property
    def targets(self) -> list[Target]:
        """The kernel's UP targets of job ml-service (waits a few seconds for registration)."""
        found: list[Target] = []

        def ready() -> bool:
            nonlocal found
            mine, _ = owned_targets(self.ctx.stack, JOB, self.ctx.kernel_pid)
            found = mine
            return len([t for t in mine if t.up]) >= 2

        wait_until(ready, timeout=8.0)
        return sorted(found, key=lambda t: t.scrape_url)

    @property
    def instances(self) -> list[str]:
        """The ``instance`` labels of the kernel's UP targets."""
        return [
            t.labels.get("instance", urlsplit(t.scrape_url).netloc) for t in self.targets if t.up
        ]

    def require_targets(self) -> list[str]:
        """The instances, or a failure saying that Prometheus scrapes no gateway of this kernel."""
        if not self.instances:
            _, others = owned_targets(self.ctx.stack, JOB, self.ctx.kernel_pid)
            raise _fail(
                f"the notebook's gateways registered with Prometheus under job {JOB!r} and UP",
                f"no UP target of job {JOB!r} served by the notebook's kernel"
                + (
                    f" (other targets of the job: {[t.scrape_url for t in others]})"
                    if others
                    else ""
                ),
                "run the cells that start both replicas and call "
                f"ml_service.serve.register(stack, {JOB!r}, url) for each, with /metrics mounted on the app.",
            )
        return self.instances

    @cached_property
    def metadata(self) -> dict[str, dict[str, str]]:
        """Per metric family: ``type`` and ``help`` as Prometheus scraped them."""
        out: dict[str, dict[str, str]] = {}
        for instance in self.require_targets():
            for item in target_metadata(self.ctx.stack, instance):
                out.setdefault(
                    str(item.get("metric")),
                    {"type": item.get("type", ""), "help": item.get("help", "")},
                )
        return out

    def family(self, name: str) -> dict[str, str] | None:
        """Metadata of ``name`` (a counter may be listed without its ``_total``)."""
        return self.metadata.get(name) or self.metadata.get(name.removesuffix("_total"))

    def series_labels(self, selector: str) -> list[dict[str, str]]:
        """Label sets of the kernel's series matching ``selector`` (a metric name)."""
        return self.prom.series(scope_query(selector, self.require_targets()))

    @cached_property
    def duration_edges(self) -> list[float]:
        """The latency histogram's bucket boundaries (``le`` values), sorted."""
        edges = {
            s.get("le", "") for s in self.series_labels("ml_prediction_duration_seconds_bucket")
        }
        return sorted(float(e) for e in edges if e)

    # --- traffic -------------------------------------------------------------------------------
    def _by_status(self, at: float | None = None) -> dict[str, float]:
        expr = scope_query("sum by (status) (ml_predictions_total)", self.require_targets())
        return {s.metric.get("status", ""): s.value for s in self.prom.query_samples(expr, time=at)}

    def _scraped_after(self, t: float) -> bool:
        expr = scope_query("timestamp(ml_requests_in_flight)", self.require_targets())
        found = self.prom.query_samples(f"min({expr})")
        if not found:
            expr = scope_query('timestamp(up{job="' + JOB + '"})', self.require_targets())
            expr = expr.replace("up{", "up{instance=~" + _instances_re(self.instances) + ",", 1)
            found = self.prom.query_samples(f"min({expr})")
        return bool(found) and found[0].value > t

    @cached_property
    def traffic(self) -> Traffic:
        """The grader's own traffic at the gateways and what Prometheus saw before and after it."""
        self.require_targets()
        urls = [
            f"{urlsplit(t.scrape_url).scheme}://{urlsplit(t.scrape_url).netloc}"
            for t in self.targets
            if t.up
        ]
        quiet_from = max(self.ctx.finished_at, time.time()) + 0.2
        wait_until(lambda: self._scraped_after(quiet_from), timeout=5.0)
        before = self._by_status()
        started = time.time()
        plans = [
            (Scenario.named("error_burst", error_rate=0.5), 0.1, 8),
            (Scenario.named("latency_spike", delay_s=0.6), 0.0, 24),
        ]
        truths: list[GroundTruth | None] = [None] * len(urls)
        errors: list[BaseException] = []

        def drive(i: int, url: str) -> None:
            scenario, bad, concurrency = (
                plans[i] if i < len(plans) else (Scenario.named("steady"), 0.0, 8)
            )
            try:
                truths[i] = run_traffic(
                    url,
                    scenario=scenario,
                    rate=25.0,
                    requests=100,
                    concurrency=concurrency,
                    bad_request_ratio=bad,
                    seed=202 + i,
                    timeout_s=10.0,
                )
            except BaseException as exc:  # reported below, with the URL
                errors.append(exc)

        threads = [threading.Thread(target=drive, args=(i, u)) for i, u in enumerate(urls)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        done = [t for t in truths if t is not None]
        ended = max(t.ended_at for t in done)
        expected_total = sum(t.sent for t in done)
        after: dict[str, float] = {}

        def settled() -> bool:
            nonlocal after
            if not self._scraped_after(ended + 0.05):
                return False
            after = self._by_status()
            return sum(after.values()) - sum(before.values()) >= expected_total

        wait_until(settled, timeout=6.0)
        evaluated_at = time.time()
        return Traffic(done, before, after, started, ended, evaluated_at)

    @cached_property
    def answers(self) -> dict[str, str]:
        """The student's PromQL answers, from the file the notebook wrote."""
        return recorded_answers(
            self.ctx.workdir / ANSWERS_FILE,
            expected=f"the PromQL answers in {ANSWERS_FILE} (written by the notebook's answers cell)",
            hint="fill in the PROMQL dictionary and run the cell that calls graders.record_answers.",
        )

    def answer(self, key: str) -> str:
        """The student's query for ``key``, scoped to the kernel's targets, ``$__range`` filled."""
        raw = self.answers.get(key, "").strip()
        if not raw or "YOUR QUERY" in raw:
            raise _fail(
                f"a PromQL query for {key!r}",
                "an empty answer",
                f"write the query for {key} in PROMQL.",
            )
        window = f"{math.ceil(self.traffic.range_s * 1000)}ms"
        filled = (
            raw.replace("$__rate_interval", window)
            .replace("${__range}", window)
            .replace("$__range", window)
        )
        return scope_query(filled, self.require_targets())

    def evaluate(self, key: str) -> list[Sample]:
        """Run the student's query ``key`` at the end of the grader's traffic."""
        expr = self.answer(key)
        try:
            return self.prom.query_samples(expr, time=self.traffic.evaluated_at)
        except Exception as exc:
            raise _fail(
                f"query {key!r} to run",
                f"Prometheus refused it: {exc}",
                "test it in the Prometheus UI.",
            ) from None

    def reference(self, expr: str) -> list[Sample]:
        """The grader's own query over the same window and instances."""
        window = f"{math.ceil(self.traffic.range_s * 1000)}ms"
        scoped = scope_query(expr.replace("$__range", window), self.require_targets())
        return self.prom.query_samples(scoped, time=self.traffic.evaluated_at)


class Traffic:
    """The grader's traffic run: ground truth per replica and the counters around it."""

    def __init__(
        self,
        truths: list[GroundTruth],
        before: Mapping[str, float],
        after: Mapping[str, float],
        started: float,
        ended: float,
        evaluated_at: float,
    ) -> None:
        self.truths, self.before, self.after = truths, dict(before), dict(after)
        self.started, self.ended, self.evaluated_at = started, ended, evaluated_at
        # one scrape before the first request is inside the window
        self.range_s = evaluated_at - started + 1.2

    @property
    def by_status(self) -> dict[str, int]:
        """Requests per status label, all replicas together."""
        out: dict[str, int] = {}
        for truth in self.truths:
            for status, n in truth.by_status.items():
                out[status] = out.get(status, 0) + n
        return out

    def latencies(self) -> list[float]:
        """Every answered request's client-side latency."""
        return [x for t in self.truths for x in t.latencies_s]

    def quantile(self, q: float) -> float:
        """Exact client-side quantile over all replicas."""
        values = sorted(self.latencies())
        if not values:
            return math.nan
        import numpy as np

        return float(np.quantile(values, q))

    @property
    def error_ratio(self) -> float:
        """Errors over answered requests, all replicas together."""
        counts = self.by_status
        answered = sum(n for s, n in counts.items() if s != "unreachable")
        return counts.get("error", 0) / answered if answered else 0.0


def _instances_re(instances: list[str]) -> str:
    return '"' + promql_regex(instances) + '"'


EXERCISE = Exercise(
    number="02",
    folder="ex02_metrics",
    notebook="metrics.ipynb",
    title="Instrument the ML service with metrics",
    state=Ex02State,
    cell_timeout=120.0,
    total_timeout=240.0,
    shares_stack=True,
    make_starter=ex02_checks.make_starter_files,
)


# --- checks (declaration order is the table's order) ----------------------------------------------
@EXERCISE.check(points=2, title="Both gateway replicas are scraped and UP")
def test_targets_up(state: Ex02State) -> None:
    """Prometheus scrapes at least two gateways of the notebook under job ml-service, all UP."""
    instances = state.require_targets()
    if len(instances) < 2:
        raise _fail(
            "two replicas (two targets) of job ml-service, UP",
            f"{len(instances)}: {instances}",
            "start a second replica with its own registry and register it too.",
        )


@EXERCISE.check(points=2, title="The five metrics exist with the right types")
def test_metric_types(state: Ex02State) -> None:
    """Each required metric family is exposed with its type (counter, histogram, gauge)."""
    state.require_targets()
    wrong = []
    for name, (kind, _) in EXPECTED.items():
        meta = state.family(name)
        if meta is None or meta.get("type") != kind:
            wrong.append(f"{name}: {meta.get('type') if meta else 'missing'} (want {kind})")
    if wrong:
        raise _fail(
            "ml_predictions_total (counter), ml_prediction_duration_seconds and "
            "ml_prediction_confidence (histograms), ml_requests_in_flight and "
            "ml_gpu_utilization_ratio (gauges)",
            "; ".join(wrong),
            "use Counter/Histogram/Gauge from prometheus_client with these exact names; a "
            "Summary cannot be aggregated across replicas — use a Histogram.",
        )


@EXERCISE.check(points=1, title="Every metric has a help text")
def test_metric_help(state: Ex02State) -> None:
    """Each required metric carries a non-empty HELP line."""
    state.require_targets()
    missing = [n for n in EXPECTED if not (state.family(n) or {}).get("help", "").strip()]
    if missing:
        raise _fail(
            "a HELP text on every metric",
            f"none on {missing}",
            "pass a one-sentence documentation string when you create each metric.",
        )


@EXERCISE.check(points=2, title="Label sets are exactly the ones asked for")
def test_label_sets(state: Ex02State) -> None:
    """Series carry exactly the required labels (besides job, instance and le)."""
    wrong = []
    for name, (kind, labels) in EXPECTED.items():
        selector = f"{name}_bucket" if kind == "histogram" else name
        found = {k for s in state.series_labels(selector) for k in s} - _STRUCTURAL
        if not state.series_labels(selector):
            wrong.append(f"{selector}: no series")
        elif found != labels:
            wrong.append(f"{selector}: {sorted(found)} (want {sorted(labels)})")
    if wrong:
        raise _fail(
            "the label sets of the task",
            "; ".join(wrong),
            "declare labelnames exactly as listed; per-user or per-request values never go in labels.",
        )


@EXERCISE.check(points=1, title="The latency histogram has a bucket boundary at the 1 s SLO")
def test_slo_bucket(state: Ex02State) -> None:
    """ml_prediction_duration_seconds has an le="1" bucket, so the SLO share is exact."""
    edges = state.duration_edges
    if SLO_SECONDS not in edges:
        raise _fail(
            "a bucket boundary at 1.0 s",
            f"boundaries {edges or 'none'}",
            "pass buckets=(..., 0.5, 1.0, 2.5, ...) to the Histogram.",
        )


@EXERCISE.check(points=1, title="/metrics passes promtool check metrics")
def test_promtool_lint(state: Ex02State) -> None:
    """The exposition of every replica passes ``promtool check metrics``."""
    state.require_targets()
    for target in [t for t in state.targets if t.up]:
        text = httpx.get(
            target.scrape_url, timeout=10.0, trust_env=False, headers={"Accept": "text/plain"}
        ).text
        result = promtool.check_metrics(text)
        if not result.ok:
            raise _fail(
                f"{target.scrape_url} to pass promtool check metrics",
                result.output[:500],
                "fix the names/units promtool reports (counters end in _total, base units).",
            )


@EXERCISE.check(points=3, title="Counters match the traffic's ground truth exactly", hidden=True)
def test_counts_match_ground_truth(state: Ex02State) -> None:
    """increase(ml_predictions_total) per status equals what the grader's traffic generator got."""
    traffic = state.traffic
    truth = {s: n for s, n in traffic.by_status.items() if s != "unreachable"}
    seen = {
        s: traffic.after.get(s, 0.0) - traffic.before.get(s, 0.0) for s in {*truth, *traffic.after}
    }
    seen = {s: round(v) for s, v in seen.items() if round(v) or s in truth}
    if seen != truth:
        raise _fail(
            f"increase per status {truth}",
            f"{seen}",
            "count every /predict exactly once in on_prediction, with status from the event.",
        )


@EXERCISE.check(points=2, title="PromQL: prediction rate by status")
def test_rate_by_status_query(state: Ex02State) -> None:
    """The rate_by_status answer returns one series per status matching the recorded rates."""
    got = {s.metric.get("status", "?"): s.value for s in state.evaluate("rate_by_status")}
    ref = {
        s.metric.get("status", "?"): s.value
        for s in state.reference("sum by (status) (rate(ml_predictions_total[$__range]))")
    }
    ref = {k: v for k, v in ref.items() if v > 0}
    bad = [k for k, v in ref.items() if k not in got or not math.isclose(got[k], v, rel_tol=0.02)]
    if bad or not got:
        raise _fail(
            f"per-status rates {_fmt(ref)} (requests/s)",
            _fmt(got),
            "sum by (status) (rate(ml_predictions_total[$__range])).",
        )


@EXERCISE.check(points=3, title="PromQL: p50/p95/p99 latency from the histogram")
def test_latency_quantile_queries(state: Ex02State) -> None:
    """p50/p95/p99 answers agree with the client-side quantiles within the bucket resolution,
    or with the grader's own aggregation of the same buckets.

    The second reading matters on a loaded machine: client-side latency then includes tens of ms
    of the client's own queueing, so a true quantile just above a bucket edge can be observed
    below it by the server, and only the server's buckets are what a query can see.
    """
    edges = state.duration_edges
    problems = []
    for key, q in QUANTILES.items():
        values = state.evaluate(key)
        true = state.traffic.quantile(q)
        low, high = _bucket_bounds(edges, true)
        reference = [
            s.value
            for s in state.reference(
                f"histogram_quantile({q}, sum by (le) "
                "(rate(ml_prediction_duration_seconds_bucket[$__range])))"
            )
        ]
        if len(values) != 1:
            problems.append(f"{key}: {len(values)} series (want one number)")
        elif not (
            low <= values[0].value <= high
            or (len(reference) == 1 and math.isclose(values[0].value, reference[0], rel_tol=0.02))
        ):
            problems.append(
                f"{key}: {values[0].value:.3f} s, true {true:.3f} s (accept {low:g}–{high:g})"
            )
    if problems:
        raise _fail(
            "one value per quantile within the histogram bucket of the true quantile",
            "; ".join(problems),
            "histogram_quantile(q, sum by (le) (rate(..._bucket[$__range]))): aggregate the "
            "buckets first; averaging per-instance quantiles is not a quantile.",
        )


@EXERCISE.check(points=2, title="PromQL: error ratio")
def test_error_ratio_query(state: Ex02State) -> None:
    """The error_ratio answer returns errors over all predictions, as recorded."""
    got = state.evaluate("error_ratio")
    ref = state.reference(
        'sum(rate(ml_predictions_total{status="error"}[$__range])) / sum(rate(ml_predictions_total[$__range]))'
    )
    want = ref[0].value if ref else math.nan
    if len(got) != 1 or not math.isclose(got[0].value, want, rel_tol=0.02, abs_tol=1e-4):
        raise _fail(
            f"an error ratio of {want:.4f} (ground truth {state.traffic.error_ratio:.4f})",
            _fmt({"value": got[0].value}) if got else "no value",
            "divide errors by ALL predictions (every status), both as sum(rate(...)).",
        )


@EXERCISE.check(points=2, title="The ML service dashboard shows data in every panel")
def test_dashboard_shows_data(state: Ex02State) -> None:
    """dashboards/ml_service.json validates and every panel returns data over the grader's traffic."""
    instances = state.require_targets()
    traffic = state.traffic
    problems = ex02_checks.dashboard_problems(
        state.ctx.workdir / ex02_checks.DASHBOARD_FILE,
        stack=state.ctx.stack,
        instances=instances,
        start=traffic.evaluated_at - traffic.range_s,
        end=traffic.evaluated_at,
    )
    if problems:
        found, _, hint = problems[0].partition(" Hint: ")
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise _fail(
            f"{ex02_checks.DASHBOARD_FILE}: a valid dashboard whose every panel shows data over "
            "the grader's traffic (queries scoped to your replicas)",
            found.rstrip(". ") + more,
            hint
            or "fill in every panel's expr in the Task 6 cell, run it and the preview cell, and "
            "check that each panel of the preview has data.",
        )


@EXERCISE.check(points=1, title="In-flight gauge returns to zero", hidden=True)
def test_in_flight_returns_to_zero(state: Ex02State) -> None:
    """After the traffic, ml_requests_in_flight is back to 0 on every replica."""
    _ = state.traffic
    expr = scope_query("ml_requests_in_flight", state.require_targets())
    values = {s.metric.get("instance", ""): s.value for s in state.prom.query_samples(expr)}
    if not values or any(v != 0 for v in values.values()):
        raise _fail(
            "0 requests in flight once traffic stopped",
            _fmt(values) or "no series",
            "inc() when a request starts and dec() in a finally block (or track_inprogress()).",
        )


@EXERCISE.check(points=2, title="Label cardinality stays bounded", hidden=True)
def test_cardinality_bounded(state: Ex02State) -> None:
    """No label of the ml_ metrics has more than 20 values (TSDB stats shown for context)."""
    traffic = state.traffic  # the grader's traffic uses many users: unbounded labels show now
    # only this kernel's series scraped since the grader's traffic began (scope_query leaves a
    # quoted __name__ alone, and other submissions graded on this stack keep their series)
    selector = '{__name__=~"ml_.+",instance=~' + _instances_re(state.require_targets()) + "}"
    values: dict[str, set[str]] = {}
    for series in state.prom.series(selector, start=traffic.started - 1.0):
        for key, value in series.items():
            if key not in _STRUCTURAL:
                values.setdefault(key, set()).add(value)
    big = {k: len(v) for k, v in values.items() if len(v) > MAX_LABEL_VALUES}
    if big:
        tsdb = state.prom.tsdb_status().get("seriesCountByMetricName") or []
        top = {d["name"]: d["value"] for d in tsdb if str(d.get("name", "")).startswith("ml_")}
        raise _fail(
            f"at most {MAX_LABEL_VALUES} values per label",
            f"{big} (series by metric: {top})",
            "never use ids (user, request) as label values; they belong in logs.",
        )


def _bucket_bounds(edges: list[float], value: float) -> tuple[float, float]:
    """The histogram bucket holding ``value``, its lower edge taken 20 ms (or 5 %) lower.

    Client-side latency includes the HTTP round trip, more than the server observes: a few ms, and
    tens of ms on a busy machine, so a true quantile just above an edge may be observed below it.
    """
    finite = sorted(e for e in edges if math.isfinite(e))
    if not finite or math.isnan(value):
        return (0.0, math.inf)
    below = [e for e in finite if e < value - max(0.02, 0.05 * value)]
    above = [e for e in finite if e >= value]
    return (below[-1] if below else 0.0, above[0] if above else finite[-1])


def _fmt(values: Mapping[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:.4g}" for k, v in sorted(values.items())) + "}"


# --- mutants: plausible wrong answers, each must fail the checks it aims at ------------------------
EXERCISE.mutant(
    "user_id_label",
    description="user_id added as a label of the predictions counter",
    aims=["cardinality_bounded"],
    replace={
        '["model_name", "model_version", "status"],': '["model_name", "model_version", "status", "user_id"],',
        "m.predictions.labels(MODEL_NAME, MODEL_VERSION, status)": "pass",
        "metrics.predictions.labels(event.model_name, event.model_version, event.status).inc()": (
            "metrics.predictions.labels(event.model_name, event.model_version, event.status, "
            'event.user_id or "none").inc()'
        ),
    },
)
EXERCISE.mutant(
    "buckets_without_slo",
    description="latency buckets without a boundary at the 1 s SLO",
    aims=["slo_bucket"],
    replace={"0.25, 0.5, 1.0, 2.5, 5.0)": "0.25, 0.5, 2.5, 5.0)"},
)
EXERCISE.mutant(
    "summary_not_histogram",
    description="a Summary where the latency Histogram is needed",
    aims=["metric_types"],
    replace={"latency=Histogram(": "latency=Summary(", "buckets=LATENCY_BUCKETS,": ""},
)
EXERCISE.mutant(
    "error_ratio_wrong_denominator",
    description="errors divided by successes instead of by all predictions",
    aims=["error_ratio_query"],
    replace={
        "' / sum(rate(ml_predictions_total[$__range]))'": (
            "' / sum(rate(ml_predictions_total{status=\"success\"}[$__range]))'"
        )
    },
)
EXERCISE.mutant(
    "dashboard_missing_metric",
    description="a dashboard panel queries ml_prediction_confidence_buckets, a metric that does not exist",
    aims=["dashboard_shows_data"],
    replace={
        "(increase(ml_prediction_confidence_bucket{": "(increase(ml_prediction_confidence_buckets{"
    },
)
EXERCISE.mutant(
    "quantiles_averaged",
    description="per-instance quantiles averaged instead of aggregating the buckets",
    aims=["latency_quantile_queries"],
    replace={
        'f"histogram_quantile({q}, sum by (le) (rate(ml_prediction_duration_seconds_bucket[$__range])))"': (
            'f"avg(histogram_quantile({q}, rate(ml_prediction_duration_seconds_bucket[$__range])))"'
        )
    },
)
