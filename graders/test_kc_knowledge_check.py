"""The module's knowledge check: eight questions, their checks, points and mutants.

Every answer is judged without a person. Choices (and the reasons, chosen from listed ones too)
are compared with the key in :mod:`graders.kc_checks`; numbers with what SciPy or the reference
computes; the functions the notebook writes (``kc_quantile.py``, ``kc_drift.py``,
``kc_budget.py``, ``kc_series.py``) are called in a child interpreter on the notebook's examples
(public checks) and on held-out inputs (hidden checks). The two queries are run against the stack
on data the grader makes for this grade alone: log lines pushed to Loki under a ``kc_run`` label
of its own (the LogQL answer is scoped to it), and counters pushed to the Pushgateway under an
``instance`` of its own (the PromQL answer is scoped to it), so concurrent grades never meet.

Run one submission: ``pytest graders/test_kc_knowledge_check.py --notebook PATH`` or
``make grade EX=kc``.
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter, generate_latest

from graders import kc_checks
from graders.context import GradingContext, recorded_answers, scope_query, wait_until
from graders.errors import CheckFailed
from graders.ex03_checks import FEATURES, GATEWAY, scope_logql
from graders.kc_checks import HELD_OUT_SEED, PUBLIC_SEED, Call
from graders.registry import Exercise
from lab_stack.clients import LogEntry, entries
from lab_stack.clients.pushgateway import PushgatewayClient, group_path

__all__ = ["ANSWERS_FILE", "EXERCISE", "SLI_JOB", "KcState"]

#: Where the notebook's ``graders.record_answers("kc", ...)`` cell writes the answers.
ANSWERS_FILE = "answers_kc.json"
#: The Pushgateway job of the grader's SLI counters (one group per grade: ``instance``).
SLI_JOB = "kc_sli"
_PLACEHOLDERS = {"", "?", "none", "nan", "your query"}
_GROUPS = {
    "bucket_quantile": kc_checks.quantile_cases,
    "ks_drift": kc_checks.ks_cases,
    "error_budget_minutes": kc_checks.budget_cases,
    "estimate_series": kc_checks.series_cases,
}
_QUESTION = {
    "bucket_quantile": "question 3",
    "ks_drift": "question 4",
    "error_budget_minutes": "question 7",
    "estimate_series": "question 8",
}


def _fail(expected: str, found: str, hint: str) -> CheckFailed:
    return CheckFailed(expected=expected, found=found, hint=hint)


class KcState:
    """What the checks look at, computed lazily and once: answers, function results, live data."""

    def __init__(self, ctx: GradingContext) -> None:
        self.ctx = ctx
        self.run_id = f"kc-{uuid.uuid4().hex[:12]}"

    # --- recorded answers ----------------------------------------------------------------------
    @cached_property
    def answers(self) -> dict[str, str]:
        """The answers the notebook recorded."""
        return recorded_answers(
            self.ctx.workdir / ANSWERS_FILE,
            expected=f"your answers in {ANSWERS_FILE} (written by the 'Record your answers' cell)",
            hint="answer every question, then run the cell that calls graders.record_answers.",
        )

    def answer(self, key: str, what: str) -> str:
        """The recorded answer ``key`` (stripped), or a failure naming the variable to fill in."""
        value = self.answers.get(key, "").strip()
        if value.lower() in _PLACEHOLDERS:
            raise _fail(
                f"an answer for {key}",
                "none (still the placeholder)" if key in self.answers else "no such answer",
                f"set {what}, then run the 'Record your answers' cell again.",
            )
        return value

    def number(self, key: str, what: str) -> float:
        """The recorded answer ``key`` as a number."""
        raw = self.answer(key, what)
        try:
            return float(raw)
        except ValueError:
            raise _fail(f"a number for {what}", repr(raw), f"set {what} to a number.") from None

    def wrong_choices(
        self, prefix: str, expected: Mapping[str, str], what: str
    ) -> list[tuple[str, str]]:
        """``(key, answer given)`` for each item of ``expected`` answered wrongly (or not at all)."""
        wrong = []
        for key, want in expected.items():
            given = self.answers.get(f"{prefix}{key}", "").strip().lower()
            if given in _PLACEHOLDERS:
                raise _fail(
                    f"an answer for every key of {what}",
                    f"none for {key!r}",
                    f"replace every '?' in {what}, then run the 'Record your answers' cell.",
                )
            if given != want:
                wrong.append((key, given))
        return wrong

    def letter(self, key: str, what: str) -> str:
        """The recorded letter answer ``key``, upper-cased."""
        return self.answer(key, what).upper().strip(" .)")

    # --- the notebook's functions --------------------------------------------------------------
    @cached_property
    def _calls(self) -> dict[tuple[str, int], list[tuple[Call, dict[str, Any]]]]:
        groups = {
            (fn, seed): cases(seed)
            for fn, cases in _GROUPS.items()
            for seed in (PUBLIC_SEED, HELD_OUT_SEED)
        }
        present = {
            fn
            for fn, module in kc_checks.MODULES.items()
            if (self.ctx.workdir / f"{module}.py").is_file()
        }
        flat = [c for (fn, _), calls in groups.items() if fn in present for c in calls]
        results = iter(kc_checks.call_functions(self.ctx.workdir, flat))
        return {
            key: [(c, next(results)) for c in calls] if key[0] in present else []
            for key, calls in groups.items()
        }

    def function_results(self, function: str, seed: int) -> list[tuple[Call, dict[str, Any]]]:
        """Each call of ``function`` on the inputs of ``seed``, with what it returned or raised."""
        module = kc_checks.MODULES[function]
        found = self._calls[(function, seed)]
        if not found:
            raise _fail(
                f"{module}.py next to the notebook, defining {function}",
                "no such file",
                f"complete and run the %%writefile {module}.py cell of {_QUESTION[function]}.",
            )
        return found

    def require_calls(
        self, function: str, seed: int, *, agree: Any, hint: str, held_out: bool
    ) -> None:
        """Fail unless every call of ``function`` on ``seed``'s inputs returns what ``agree`` accepts."""
        bad = []
        for call, result in self.function_results(function, seed):
            if not result.get("ok"):
                bad.append(f"{call.shown} raised {result.get('error', 'an error')}")
            elif not agree(result.get("value"), call.expected):
                want = "" if held_out else f", want {call.expected!r}"
                bad.append(f"{call.shown} returned {result.get('value')!r}{want}")
        if bad:
            more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
            raise _fail(
                f"{function} to answer every {'held-out ' if held_out else ''}call right",
                "; ".join(bad[:3]) + more,
                hint,
            )

    # --- question 5: log lines of the grader's own, in Loki ------------------------------------
    @cached_property
    def log_case(self) -> tuple[dict[str, list[str]], float]:
        """Push this grade's log lines; return ``{trace id: its lines}`` for two traces, and when."""
        loki = self.ctx.stack.loki
        traces = [uuid.uuid4().hex for _ in range(5)]
        by_trace: dict[str, list[str]] = {t: [] for t in traces}
        streams: dict[tuple[str, str], list[str]] = {}

        def log(service: str, level: str, trace: str, **fields: Any) -> None:
            line = json.dumps(
                {"service": service, "level": level, "trace_id": trace, **fields},
                sort_keys=True,
            )
            streams.setdefault((service, level), []).append(line)
            by_trace[trace].append(line)

        for i, trace in enumerate(traces):
            request = f"req-{uuid.uuid4().hex[:8]}"
            log(GATEWAY, "info", trace, event="request received", request_id=request)
            log(FEATURES, "info", trace, event="features looked up", request_id=request, n=9)
            if i % 2:
                log(FEATURES, "error", trace, event="feature store timeout", request_id=request)
                log(GATEWAY, "error", trace, event="prediction failed", request_id=request)
            else:
                log(GATEWAY, "info", trace, event="prediction", request_id=request, ms=12 + i)
        pushed_ns = time.time_ns()
        pushed_at = pushed_ns / 1e9
        loki.push(
            [
                {
                    "stream": {"service": service, "level": level, "kc_run": self.run_id},
                    "values": [[str(pushed_ns + i), line] for i, line in enumerate(lines)],
                }
                for (service, level), lines in streams.items()
            ]
        )
        total = sum(len(v) for v in streams.values())

        def arrived() -> bool:
            data = loki.query_range(
                f'{{kc_run="{self.run_id}"}}', start=pushed_at - 5, end=time.time() + 1
            )
            return len(entries(data)) >= total

        wait_until(arrived, timeout=10.0)
        return {t: sorted(by_trace[t]) for t in traces[:2]}, pushed_at

    def run_logql(self, trace_id: str, pushed_at: float) -> list[LogEntry]:
        """The student's LogQL with ``$trace_id`` filled in, scoped to this grade's lines."""
        raw = self.answer("logql_trace", "LOGQL_TRACE")
        filled = raw.replace("${trace_id}", trace_id).replace("$trace_id", trace_id)
        query = scope_logql(filled, f'kc_run="{self.run_id}"')
        try:
            data = self.ctx.stack.loki.query_range(
                query, start=pushed_at - 5, end=time.time() + 1, limit=1000, direction="forward"
            )
        except Exception as exc:
            raise _fail(
                "LOGQL_TRACE to run in Loki",
                f"Loki refused it: {exc}",
                'start from a stream selector of both services, e.g. {service=~"a|b"}, then '
                "filter on the trace id.",
            ) from None
        if data.get("resultType") != "streams":
            raise _fail(
                "a log query (it returns lines)",
                f"a {data.get('resultType')} result",
                "leave out any metric function such as count_over_time around it.",
            )
        return entries(data)

    # --- question 7: counters of the grader's own, through the Pushgateway ---------------------
    def _push_counts(self, index: int) -> None:
        registry = CollectorRegistry()
        counter = Counter(
            "kc_http_requests_total", "Requests by code.", ["code"], registry=registry
        )
        for code, values in kc_checks.SLI_COUNTS.items():
            counter.labels(code).inc(values[index])
        url = self.ctx.stack.url("pushgateway") + group_path(SLI_JOB, {"instance": self.run_id})
        response = httpx.put(url, content=generate_latest(registry), timeout=10.0, trust_env=False)
        response.raise_for_status()

    def _seen(self, index: int) -> bool:
        want = sum(v[index] for v in kc_checks.SLI_COUNTS.values())
        got = self.ctx.stack.prometheus.query_value(
            f'sum(kc_http_requests_total{{job="{SLI_JOB}",instance="{self.run_id}"}})'
        )
        return got is not None and math.isclose(got, want)

    @cached_property
    def sli_time(self) -> float:
        """Push two states of the counters, each scraped by Prometheus; return a time after both."""
        for index in (0, 1):
            self._push_counts(index)
            if not wait_until(functools.partial(self._seen, index), timeout=15.0):
                raise RuntimeError(
                    f"Prometheus did not scrape the grader's counters from the Pushgateway "
                    f"(job {SLI_JOB}, instance {self.run_id}) within 15 s. Hint: is the "
                    "Pushgateway a scrape target of the lab's Prometheus (make lab)?"
                )
            time.sleep(1.2)  # at least one more scrape of this state
        return time.time()

    @property
    def sli_truth(self) -> float:
        """The share of good (non-5xx) requests among those between the two pushes."""
        new = {c: b - a for c, (a, b) in kc_checks.SLI_COUNTS.items()}
        return sum(n for c, n in new.items() if not c.startswith("5")) / sum(new.values())

    def delete_sli_group(self) -> None:
        """Remove this grade's counters from the Pushgateway."""
        with PushgatewayClient(self.ctx.stack.url("pushgateway")) as pgw:
            pgw.delete_group(SLI_JOB, {"instance": self.run_id})


EXERCISE = Exercise(
    number="kc",
    folder="knowledge_check",
    notebook="knowledge_check.ipynb",
    title="Knowledge check: observability & monitoring for ML platforms",
    state=KcState,
    cell_timeout=60.0,
    total_timeout=180.0,
    shares_stack=True,
    make_starter=kc_checks.make_starter_files,
)


def _close(rel: float, abs_: float = 0.0) -> Any:
    def agree(value: Any, expected: Any) -> bool:
        return (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isclose(value, expected, rel_tol=rel, abs_tol=abs_)
        )

    return agree


def _same_bool(value: Any, expected: Any) -> bool:
    return isinstance(value, bool) and value == expected


def _same_int(value: Any, expected: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and float(value).is_integer()
        and int(value) == expected
    )


def _listed(pairs: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{k} (you said {v})" for k, v in pairs)


# --- question 1 -----------------------------------------------------------------------------------
@EXERCISE.check(points=2, title="Q1: each question goes to the pillar that answers it")
def test_pillars(state: KcState) -> None:
    """Every question of the table is matched with metrics, logs or traces as the key has it."""
    wrong = state.wrong_choices("pillar.", kc_checks.PILLARS, "PILLARS")
    if wrong:
        raise _fail(
            "the pillar that answers each question",
            f"{len(wrong)} of {len(kc_checks.PILLARS)} wrong: {_listed(wrong)}",
            "metrics answer 'how much / how often' over many requests; logs tell what happened "
            "in one event, with its details; traces show where one request spent its time "
            "across services.",
        )


# --- question 2 -----------------------------------------------------------------------------------
@EXERCISE.check(points=2, title="Q2: Counter or Gauge, with the reason")
def test_counter_gauge(state: KcState) -> None:
    """Each quantity gets its type, and the reason a counter suits counts is the listed one."""
    wrong = state.wrong_choices("type.", kc_checks.METRIC_TYPES, "METRIC_TYPES")
    reason = state.letter("counter_reason", "COUNTER_REASON")
    problems = [f"types: {_listed(wrong)}"] if wrong else []
    if reason != kc_checks.COUNTER_REASON:
        problems.append(f"COUNTER_REASON {reason!r} is not the reason")
    if problems:
        raise _fail(
            "a counter for what only accumulates, a gauge for what goes up and down, and why",
            "; ".join(problems),
            "ask: can this value ever fall while the process runs? Then it is a gauge. Counts "
            "of events only grow, and PromQL reads them through rate(), which knows about resets.",
        )


# --- question 3 -----------------------------------------------------------------------------------
@EXERCISE.check(points=1, title="Q3: a histogram for a fleet-wide quantile, with the reason")
def test_histogram_summary(state: KcState) -> None:
    """The fleet's p95 needs a histogram, because bucket counts aggregate across instances."""
    choice = state.answer("histogram_or_summary", "HISTOGRAM_OR_SUMMARY").lower()
    reason = state.letter("histogram_reason", "HISTOGRAM_REASON")
    if choice != "histogram" or reason != kc_checks.HISTOGRAM_REASON:
        raise _fail(
            "the type whose p95 can be computed over four replicas together, and why",
            f"{choice!r} with reason {reason!r}",
            "a quantile computed inside each replica cannot be combined with the others'; "
            "what can be added up across replicas?",
        )


@EXERCISE.check(points=1, title="Q3: bucket_quantile answers the notebook's examples")
def test_bucket_quantile(state: KcState) -> None:
    """bucket_quantile on EXAMPLE_BUCKETS gives what histogram_quantile gives."""
    state.require_calls(
        "bucket_quantile",
        PUBLIC_SEED,
        agree=_close(1e-9, 1e-12),
        held_out=False,
        hint="find the first bucket whose cumulative count is >= q * total, then interpolate "
        "between the previous bound and its own; in the +Inf bucket return the last finite bound.",
    )


@EXERCISE.check(points=2, title="Q3: bucket_quantile on held-out histograms", hidden=True)
def test_bucket_quantile_held_out(state: KcState) -> None:
    """bucket_quantile agrees with histogram_quantile on random held-out buckets and quantiles."""
    state.require_calls(
        "bucket_quantile",
        HELD_OUT_SEED,
        agree=_close(1e-9, 1e-12),
        held_out=True,
        hint="work from the buckets you are given (any number, any bounds): subtract the "
        "previous bucket's count from both the rank and the bucket's count before "
        "interpolating, and handle a rank in the first bucket (it starts at 0).",
    )


# --- question 4 -----------------------------------------------------------------------------------
@EXERCISE.check(points=1, title="Q4: what data drift is")
def test_drift_definition(state: KcState) -> None:
    """The definition chosen is a change of the data's distribution against the reference."""
    chosen = state.letter("drift_definition", "DRIFT_DEFINITION")
    if chosen != kc_checks.DRIFT_DEFINITION:
        raise _fail(
            "the definition of data drift",
            f"{chosen!r}",
            "drift is about the data the model sees (and what it means), not the service's "
            "health: nothing crashes and latency is fine.",
        )


@EXERCISE.check(points=1, title="Q4: ks_drift decides the notebook's sample pairs")
def test_ks_drift(state: KcState) -> None:
    """ks_drift matches scipy's KS decision (p < alpha) on public pairs, at several alphas."""
    state.require_calls(
        "ks_drift",
        PUBLIC_SEED,
        agree=_same_bool,
        held_out=False,
        hint="return a bool: scipy.stats.ks_2samp(reference, current).pvalue < alpha, with the "
        "alpha you are given (default 0.05).",
    )


@EXERCISE.check(points=2, title="Q4: ks_drift on held-out samples", hidden=True)
def test_ks_drift_held_out(state: KcState) -> None:
    """ks_drift matches scipy's KS decision on held-out pairs (shifts, spread changes, borderline p)."""
    state.require_calls(
        "ks_drift",
        HELD_OUT_SEED,
        agree=_same_bool,
        held_out=True,
        hint="use the KS test's p-value, compared with the alpha argument: a change of spread "
        "at the same mean is drift too, and a borderline p-value depends on alpha.",
    )


# --- question 5 -----------------------------------------------------------------------------------
@EXERCISE.check(points=1, title="Q5: logs and traces are joined by the trace id")
def test_correlation(state: KcState) -> None:
    """The mechanism chosen is the propagated trace id written into every log line."""
    if state.letter("correlation_reason", "CORRELATION_REASON") != kc_checks.CORRELATION_REASON:
        raise _fail(
            "how log lines and traces are correlated",
            f"{state.letter('correlation_reason', 'CORRELATION_REASON')!r}",
            "timestamps collide under load and labels do not follow a request: what travels "
            "with the request from service to service?",
        )


@EXERCISE.check(points=2, title="Q5: LOGQL_TRACE returns exactly one trace's lines")
def test_logql_trace_query(state: KcState) -> None:
    """With $trace_id filled in, the query returns every line of that trace from both services."""
    expected, pushed_at = state.log_case
    for trace_id, want in expected.items():
        got = sorted(e.line for e in state.run_logql(trace_id, pushed_at))
        if got != want:
            other = [line for line in got if trace_id not in line]
            missing = [line for line in want if line not in got]
            found = f"{len(got)} lines for trace {trace_id} (want {len(want)})"
            if other:
                found += f"; {len(other)} of them belong to other traces"
            if missing:
                services = sorted({json.loads(line)["service"] for line in missing})
                levels = sorted({json.loads(line)["level"] for line in missing})
                found += f"; missing lines of {services} at levels {levels}"
            raise _fail(
                "every line of the request's trace, from both services, at any level, and no other",
                found,
                'select both services ({service=~"prediction-gateway|feature-service"}), keep '
                'every level, and filter on the id: | json | trace_id="$trace_id" (or '
                '|= "$trace_id").',
            )


# --- question 6 -----------------------------------------------------------------------------------
@EXERCISE.check(points=2, title="Q6: the Wasserstein distance of the two samples")
def test_wasserstein_value(state: KcState) -> None:
    """WASSERSTEIN equals scipy's wasserstein_distance of SAMPLE_A and SAMPLE_B."""
    from scipy import stats

    want = float(stats.wasserstein_distance(kc_checks.WASSERSTEIN_A, kc_checks.WASSERSTEIN_B))
    got = state.number("wasserstein", "WASSERSTEIN")
    if not math.isclose(got, want, rel_tol=1e-3, abs_tol=5e-4):
        means = abs(
            sum(kc_checks.WASSERSTEIN_A) / len(kc_checks.WASSERSTEIN_A)
            - sum(kc_checks.WASSERSTEIN_B) / len(kc_checks.WASSERSTEIN_B)
        )
        note = " (that is the difference of the means)" if math.isclose(got, means) else ""
        raise _fail(
            f"the Wasserstein distance of SAMPLE_A and SAMPLE_B, {want:.4f}",
            f"{got:.4g}{note}",
            "the distance moves every bit of probability mass, not only the centre: sort both "
            "samples and average |a_i - b_i|, or call scipy.stats.wasserstein_distance(A, B).",
        )


@EXERCISE.check(points=1, title="Q6: when the Wasserstein distance beats KS")
def test_wasserstein_when(state: KcState) -> None:
    """The case chosen is the one where a distance in the feature's units is what matters."""
    given = state.letter("wasserstein_when", "WASSERSTEIN_WHEN")
    if given != kc_checks.WASSERSTEIN_WHEN:
        raise _fail(
            "when the Wasserstein distance is the better tool",
            repr(given),
            "KS gives a p-value, which grows ever smaller with the sample size; the Wasserstein "
            "distance gives a size, in the feature's units. When is a size what you need?",
        )


# --- question 7 -----------------------------------------------------------------------------------
@EXERCISE.check(points=1, title="Q7: SLI, SLO and SLA told apart")
def test_slo_terms(state: KcState) -> None:
    """Each statement is matched with sli, slo or sla as the key has it."""
    wrong = state.wrong_choices("term.", kc_checks.SLO_TERMS, "SLO_TERMS")
    if wrong:
        raise _fail(
            "the measurement (SLI), the target (SLO) and the contract (SLA)",
            _listed(wrong),
            "an SLI is a measured ratio; an SLO is the target for it over a window; an SLA is a "
            "promise to a customer with consequences when it is broken.",
        )


@EXERCISE.check(points=1, title="Q7: the error budget of 99.5 % over 28 days")
def test_error_budget(state: KcState) -> None:
    """ERROR_BUDGET_MINUTES is (1 - 0.995) of 28 days, in minutes, and the example call agrees."""
    state.require_calls(
        "error_budget_minutes",
        PUBLIC_SEED,
        agree=_close(1e-6),
        held_out=False,
        hint="the budget is (1 - slo) of the window: window_days * 24 * 60 minutes.",
    )
    want = kc_checks.error_budget_minutes(kc_checks.BUDGET_SLO, kc_checks.BUDGET_WINDOW_DAYS)
    got = state.number("error_budget_minutes", "ERROR_BUDGET_MINUTES")
    if not math.isclose(got, want, rel_tol=1e-4):
        other = {
            days: kc_checks.error_budget_minutes(kc_checks.BUDGET_SLO, days)
            for days in (7, 30, 31, 90, 365)
        }
        window = next((d for d, v in other.items() if math.isclose(got, v, rel_tol=1e-4)), None)
        note = f" (the budget over {window} days)" if window else ""
        raise _fail(
            f"the error budget of a 99.5 % SLO over {kc_checks.BUDGET_WINDOW_DAYS} days, in minutes",
            f"{got:g}{note}",
            "use the SLO's own window — 28 days here, not a calendar month — and (1 - 0.995).",
        )


@EXERCISE.check(points=1, title="Q7: error_budget_minutes on held-out SLOs", hidden=True)
def test_error_budget_held_out(state: KcState) -> None:
    """error_budget_minutes is right for held-out SLOs and windows."""
    state.require_calls(
        "error_budget_minutes",
        HELD_OUT_SEED,
        agree=_close(1e-6),
        held_out=True,
        hint="use both arguments: (1 - slo) * window_days * 24 * 60.",
    )


@EXERCISE.check(points=2, title="Q7: SLI_PROMQL measures the share of good requests")
def test_sli_promql(state: KcState) -> None:
    """On the grader's own counters, the query returns one number: non-5xx over all, by rate."""
    raw = state.answer("sli_promql", "SLI_PROMQL")
    window = "5m"
    filled = (
        raw.replace("$__rate_interval", window)
        .replace("${__range}", window)
        .replace("$__range", window)
    )
    query = scope_query(filled, [state.run_id], prefix="kc_")
    try:
        at = state.sli_time
        try:
            found = state.ctx.stack.prometheus.query_samples(query, time=at)
        except Exception as exc:
            raise _fail(
                "SLI_PROMQL to run in Prometheus",
                f"Prometheus refused it: {exc}",
                "try it in the Prometheus UI: sum(rate(good[5m])) / sum(rate(all[5m])).",
            ) from None
    finally:
        if "sli_time" in state.__dict__:
            state.delete_sli_group()
    want = state.sli_truth
    if len(found) != 1 or not math.isclose(found[0].value, want, rel_tol=1e-3):
        shown = (
            "no value"
            if not found
            else ", ".join(f"{dict(s.metric) or '{}'}: {s.value:.4g}" for s in found[:4])
        )
        raise _fail(
            f"one number, the share of requests not answered with a 5xx: {want:.4f} on the "
            "grader's counters",
            shown,
            "rate() each counter over [5m] first (a counter's raw value counts since the process "
            'started), then sum: sum(rate(x{code!~"5.."}[5m])) / sum(rate(x[5m])). A 404 is a '
            "good request for availability.",
        )


# --- question 8 -----------------------------------------------------------------------------------
@EXERCISE.check(points=1, title="Q8: the label sets that keep cardinality bounded")
def test_safe_labels(state: KcState) -> None:
    """SAFE_LABEL_SETS holds exactly the label sets whose values are few and bounded."""
    raw = state.answers.get("safe_label_sets", "")
    given = set(re.findall(r"[A-G]", raw.upper()))
    if not given:
        raise _fail(
            "the letters of the safe label sets",
            "none",
            "put the letters in SAFE_LABEL_SETS and run the 'Record your answers' cell.",
        )
    want = set(kc_checks.SAFE_LABEL_SETS)
    if given != want:
        unsafe = sorted(given - want)
        problems = [f"{', '.join(unsafe)} unbounded"] if unsafe else []
        if want - given:
            problems.append(f"{len(want - given)} safe set(s) left out")
        raise _fail(
            "exactly the label sets whose values are few and known in advance",
            "; ".join(problems),
            "a label is safe when you can list its values (models, statuses, endpoints, "
            "regions); ids, amounts and free text are unbounded and belong in logs and traces.",
        )


@EXERCISE.check(points=1, title="Q8: estimate_series answers the notebook's examples")
def test_series_count(state: KcState) -> None:
    """estimate_series gives the series count of the notebook's examples."""
    state.require_calls(
        "estimate_series",
        PUBLIC_SEED,
        agree=_same_int,
        held_out=False,
        hint="each combination of label values is a series: multiply the value counts; a "
        "histogram has buckets + 3 series per combination.",
    )


@EXERCISE.check(points=1, title="Q8: estimate_series on held-out label sets", hidden=True)
def test_series_count_held_out(state: KcState) -> None:
    """estimate_series is right for held-out label sets (none, one, several; histograms too)."""
    state.require_calls(
        "estimate_series",
        HELD_OUT_SEED,
        agree=_same_int,
        held_out=True,
        hint="multiply (do not add) the numbers of values; a metric without labels has one "
        "combination; multiply by buckets + 3 only for a histogram.",
    )


# --- mutants: plausible wrong answers, each must fail the checks it aims at ------------------------
EXERCISE.mutant(
    "wrong_pillar",
    description="a slow request's downstream calls looked for in logs instead of a trace",
    aims=["pillars"],
    replace={'"why_request_slow": "traces"': '"why_request_slow": "logs"'},
)
EXERCISE.mutant(
    "in_flight_counter",
    description="requests in flight counted with a Counter",
    aims=["counter_gauge"],
    replace={'"requests_in_flight": "gauge"': '"requests_in_flight": "counter"'},
)
EXERCISE.mutant(
    "summary_for_fleet",
    description="a Summary chosen for a quantile aggregated across replicas",
    aims=["histogram_summary"],
    replace={'HISTOGRAM_OR_SUMMARY = "histogram"': 'HISTOGRAM_OR_SUMMARY = "summary"'},
)
EXERCISE.mutant(
    "quantile_without_interpolation",
    description="bucket_quantile returns the bucket's upper bound instead of interpolating",
    aims=["bucket_quantile", "bucket_quantile_held_out"],
    replace={"return start + (end - start) * (rank / count)": "return end"},
)
EXERCISE.mutant(
    "ks_alpha_ignored",
    description="ks_drift compares the p-value with a fixed 0.05 whatever alpha it is given",
    aims=["ks_drift", "ks_drift_held_out"],
    replace={".pvalue < alpha)": ".pvalue < 0.05)"},
)
EXERCISE.mutant(
    "logql_without_trace_filter",
    description="the LogQL query selects both services but never filters on the trace id",
    aims=["logql_trace_query"],
    replace={' | json | trace_id="$trace_id"\'': " | json'"},
)
EXERCISE.mutant(
    "wasserstein_as_mean_difference",
    description="the Wasserstein distance computed as the difference of the means",
    aims=["wasserstein_value"],
    replace={
        "float(stats.wasserstein_distance(SAMPLE_A, SAMPLE_B))": (
            "float(abs(np.mean(SAMPLE_A) - np.mean(SAMPLE_B)))"
        )
    },
)
EXERCISE.mutant(
    "budget_over_wrong_window",
    description="the error budget computed over 30 days instead of the SLO's 28",
    aims=["error_budget"],
    replace={
        "kc_budget.error_budget_minutes(0.995, 28)": "kc_budget.error_budget_minutes(0.995, 30)"
    },
)
EXERCISE.mutant(
    "sli_without_rate",
    description="the SLI divides the counters' raw totals instead of their rates over 5m",
    aims=["sli_promql"],
    replace={
        "'sum(rate(kc_http_requests_total{code!~\"5..\"}[5m])) / sum(rate(kc_http_requests_total[5m]))'": (
            "'sum(kc_http_requests_total{code!~\"5..\"}) / sum(kc_http_requests_total)'"
        )
    },
)
EXERCISE.mutant(
    "series_added_not_multiplied",
    description="estimate_series adds the labels' value counts instead of multiplying them",
    aims=["series_count", "series_count_held_out"],
    replace={"math.prod(label_values.values())": "sum(label_values.values())"},
)
