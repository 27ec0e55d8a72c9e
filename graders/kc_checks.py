"""The knowledge check's answer key, reference functions and held-out inputs, as plain code.

The grader module :mod:`graders.test_kc_knowledge_check` asks the backends (Loki, the
Pushgateway, Prometheus) and the submission's functions; everything here needs no backend and is
unit-tested on its own in ``tests/graders/test_kc_checks.py``.

* the expected choices (``PILLARS``, ``METRIC_TYPES``, ... ) and the letter of each right reason;
* references for the functions the notebook writes: :func:`bucket_quantile` (what PromQL's
  ``histogram_quantile`` computes), :func:`error_budget_minutes`, :func:`estimate_series`; the
  KS decision is SciPy's own;
* held-out inputs drawn from a seed (:func:`quantile_cases`, :func:`ks_cases`, ...);
* :func:`call_functions`: run the submission's functions in a child interpreter.

Example:
    >>> bucket_quantile(0.95, [(0.1, 40), (0.25, 70), (0.5, 90), (1.0, 98), (math.inf, 100)])
    0.8125
    >>> round(error_budget_minutes(0.999, 30), 6)
    43.2
    >>> estimate_series({"model_name": 3, "status": 3}, buckets=10)
    117
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BUDGET_SLO",
    "BUDGET_WINDOW_DAYS",
    "CORRELATION_REASON",
    "COUNTER_REASON",
    "DRIFT_DEFINITION",
    "EXAMPLE_BUCKETS",
    "HELD_OUT_SEED",
    "HISTOGRAM_REASON",
    "METRIC_TYPES",
    "MODULES",
    "PILLARS",
    "PUBLIC_SEED",
    "SAFE_LABEL_SETS",
    "SLI_COUNTS",
    "SLO_TERMS",
    "WASSERSTEIN_A",
    "WASSERSTEIN_B",
    "WASSERSTEIN_WHEN",
    "Call",
    "bucket_quantile",
    "budget_cases",
    "call_functions",
    "error_budget_minutes",
    "estimate_series",
    "ks_cases",
    "make_starter_files",
    "quantile_cases",
    "series_cases",
]

#: Seeds of the inputs: the notebook's examples, and the held-out ones of the hidden checks.
PUBLIC_SEED = 0
HELD_OUT_SEED = 13_013

# --- the answer key -------------------------------------------------------------------------------
#: Q1: the pillar that answers each question.
PILLARS = {
    "p99_latency_last_hour": "metrics",
    "why_request_slow": "traces",
    "exception_of_failed_request": "logs",
    "predictions_per_second_by_version": "metrics",
    "path_across_services": "traces",
    "model_loaded_message": "logs",
}
#: Q2: the metric type of each quantity, and the reason a counter is right for counts.
METRIC_TYPES = {
    "predictions_served": "counter",
    "requests_in_flight": "gauge",
    "gpu_memory_used_bytes": "gauge",
    "model_load_failures": "counter",
    "feature_queue_depth": "gauge",
    "bytes_received": "counter",
}
COUNTER_REASON = "B"
#: Q3: histogram for the fleet's p95, and why.
HISTOGRAM_REASON = "B"
#: Q4: what data drift is.
DRIFT_DEFINITION = "B"
#: Q5: how logs and traces are correlated.
CORRELATION_REASON = "B"
#: Q6: the two samples, and when the Wasserstein distance beats KS.
WASSERSTEIN_A = (2.9, 3.1, 3.0, 3.2, 2.8, 3.0, 3.3, 2.7, 3.1, 2.9)
WASSERSTEIN_B = (0.5, 6.1, 1.2, 5.4, 3.9, 0.8, 6.6, 2.0, 4.7, 3.8)
WASSERSTEIN_WHEN = "C"
#: Q7: which statement is an SLI, an SLO, an SLA; the budget asked for; the grader's SLI counts.
SLO_TERMS = {"share_of_good_requests_5m": "sli", "internal_target": "slo", "customer_credit": "sla"}
BUDGET_SLO = 0.995
BUDGET_WINDOW_DAYS = 28
#: ``code`` -> (counter value at the first push, at the second): 950 of 1000 new requests are good
#: (not 5xx). Every first value is at least its increase, so Prometheus extrapolates every series
#: of the group by the same factor and a ratio of rates is exactly the ratio of increases.
SLI_COUNTS = {"200": (5000, 5900), "404": (100, 150), "500": (40, 70), "503": (30, 50)}
#: Q8: the label sets that are safe on a metric.
SAFE_LABEL_SETS = frozenset({"A", "C", "E"})

#: The modules the notebook writes with ``%%writefile``, and the function each must define.
MODULES = {
    "bucket_quantile": "kc_quantile",
    "ks_drift": "kc_drift",
    "error_budget_minutes": "kc_budget",
    "estimate_series": "kc_series",
}

#: The notebook's example histogram: (upper bound ``le``, cumulative count), +Inf last.
EXAMPLE_BUCKETS = ((0.1, 40.0), (0.25, 70.0), (0.5, 90.0), (1.0, 98.0), (math.inf, 100.0))


# --- references -----------------------------------------------------------------------------------
def bucket_quantile(q: float, buckets: Sequence[Sequence[float]]) -> float:
    """The ``q``-quantile of cumulative ``buckets`` as Prometheus's ``histogram_quantile`` has it.

    Linear interpolation inside the bucket that holds rank ``q * total`` (from 0 for the first
    bucket when its bound is positive); a rank in the +Inf bucket gives the highest finite bound.
    """
    ordered = sorted((float(le), float(n)) for le, n in buckets)
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return math.nan
    total = ordered[-1][1]
    if total == 0:
        return math.nan
    rank = q * total
    b = next(i for i, (_, n) in enumerate(ordered) if n >= rank)
    if b == len(ordered) - 1:
        return ordered[-2][0]
    if b == 0 and ordered[0][0] <= 0:
        return ordered[0][0]
    start, end, count = 0.0, ordered[b][0], ordered[b][1]
    if b > 0:
        start = ordered[b - 1][0]
        count -= ordered[b - 1][1]
        rank -= ordered[b - 1][1]
    return start + (end - start) * (rank / count)


def error_budget_minutes(slo: float, window_days: float) -> float:
    """Minutes of total failure an SLO (a fraction, 0.999) allows over a window of days."""
    return (1.0 - slo) * window_days * 24 * 60


def estimate_series(label_values: Mapping[str, int], buckets: int | None = None) -> int:
    """Series one metric can make: the product of its labels' value counts (x B+3 for a histogram)."""
    combos = math.prod(int(n) for n in label_values.values())
    return combos * (int(buckets) + 3) if buckets is not None else combos


# --- held-out inputs ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    """One call of a submitted function: the arguments, and what the grader expects back."""

    name: str
    function: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    expected: Any = None
    shown: str = ""  # how the call reads in a message (the arguments, short)

    @property
    def module(self) -> str:
        """The module the notebook writes for this function."""
        return MODULES[self.function]


def quantile_cases(seed: int) -> list[Call]:
    """``bucket_quantile`` calls: the notebook's example, then random histograms from ``seed``."""
    calls = [
        Call(
            f"example q={q}",
            "bucket_quantile",
            (q, [list(b) for b in EXAMPLE_BUCKETS]),
            expected=bucket_quantile(q, EXAMPLE_BUCKETS),
            shown=f"bucket_quantile({q}, EXAMPLE_BUCKETS)",
        )
        for q in (0.5, 0.95, 0.99)
    ]
    if seed == PUBLIC_SEED:
        return calls
    rng = np.random.default_rng(seed)
    for i in range(6):
        edges = np.cumsum(rng.uniform(0.02, 0.6, size=int(rng.integers(4, 9))))
        counts = np.cumsum(rng.integers(0, 40, size=len(edges) + 1))
        counts[-1] += int(rng.integers(1, 5))  # observations past the last bound: the +Inf bucket
        buckets = [[float(round(e, 3)), float(c)] for e, c in zip(edges, counts, strict=False)]
        buckets.append([math.inf, float(counts[-1])])
        for q in (0.3, 0.9, 0.999 if i % 2 else 0.01):
            calls.append(
                Call(
                    f"held-out {i} q={q}",
                    "bucket_quantile",
                    (q, buckets),
                    expected=bucket_quantile(q, buckets),
                    shown=f"bucket_quantile({q}, {len(buckets)} held-out buckets)",
                )
            )
    return calls


def _ks_p(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import stats

    return float(stats.ks_2samp(a, b).pvalue)


def _band_pair(
    rng: np.random.Generator, low: float, high: float, *, n: int = 400
) -> tuple[np.ndarray, np.ndarray]:
    """Two samples whose KS p-value lies in (low, high): a small shift, redrawn until it does."""
    for _ in range(2000):
        a = rng.normal(0.0, 1.0, n)
        b = rng.normal(0.12, 1.0, n)
        if low < _ks_p(a, b) < high:
            return a, b
    raise RuntimeError(f"no pair with a KS p-value in ({low}, {high}); change the seed")


def ks_cases(seed: int) -> list[Call]:
    """``ks_drift`` calls on samples from ``seed``; expected: SciPy's ``ks_2samp`` p-value < alpha.

    Beside clear cases (no change, a shift, a change of spread at the same mean, a skewed
    distribution), two pairs sit between significance levels, so the decision depends on the
    ``alpha`` passed (and on the default of 0.05).
    """
    rng = np.random.default_rng(seed)
    pairs: list[tuple[str, np.ndarray, np.ndarray]] = [
        ("no change", rng.normal(0, 1, 800), rng.normal(0, 1, 600)),
        ("mean shift", rng.normal(0, 1, 600), rng.normal(0.4, 1, 500)),
        ("spread change, same mean", rng.normal(5, 1, 800), rng.normal(5, 1.6, 800)),
        ("skewed, no change", rng.lognormal(0, 0.8, 700), rng.lognormal(0, 0.8, 700)),
    ]
    a, b = _band_pair(rng, 0.02, 0.04)
    pairs.append(("p between 0.01 and 0.05", a, b))
    a, b = _band_pair(rng, 0.06, 0.09)
    pairs.append(("p between 0.05 and 0.1", a, b))
    calls = []
    for name, ref, cur in pairs:
        ref_l, cur_l = [round(float(x), 6) for x in ref], [round(float(x), 6) for x in cur]
        p = _ks_p(np.array(ref_l), np.array(cur_l))
        for alpha in (None, 0.01, 0.1):
            kwargs = {} if alpha is None else {"alpha": alpha}
            level = 0.05 if alpha is None else alpha
            calls.append(
                Call(
                    f"{name}, alpha={level}",
                    "ks_drift",
                    (ref_l, cur_l),
                    kwargs,
                    expected=p < level,
                    shown=f"ks_drift(<{name}: {len(ref_l)} vs {len(cur_l)} values>"
                    + (f", alpha={alpha})" if alpha is not None else ")"),
                )
            )
    return calls


def budget_cases(seed: int) -> list[Call]:
    """``error_budget_minutes`` calls: the notebook's example, or held-out SLOs and windows."""
    cases = (
        [(0.999, 30)]
        if seed == PUBLIC_SEED
        else [(0.99, 7), (0.9995, 90), (0.95, 1), (0.9999, 365), (0.998, 14)]
    )
    return [
        Call(
            f"slo={slo}, {days} days",
            "error_budget_minutes",
            (slo, days),
            expected=error_budget_minutes(slo, days),
            shown=f"error_budget_minutes({slo}, {days})",
        )
        for slo, days in cases
    ]


def series_cases(seed: int) -> list[Call]:
    """``estimate_series`` calls: the notebook's examples, or held-out label sets from ``seed``."""
    if seed == PUBLIC_SEED:
        cases: list[tuple[dict[str, int], int | None]] = [
            ({"model_name": 3, "status": 3}, None),
            ({"model_name": 3, "status": 3}, 10),
        ]
    else:
        rng = np.random.default_rng(seed)
        names = ["model", "status", "endpoint", "region", "version", "gpu"]
        cases = [({}, None), ({}, 12), ({"user_id": 250_000, "status": 3}, None)]
        for _ in range(4):
            chosen = rng.choice(names, size=int(rng.integers(1, 5)), replace=False)
            labels = {str(n): int(rng.integers(1, 30)) for n in chosen}
            cases.append((labels, None if rng.random() < 0.4 else int(rng.integers(5, 16))))
    calls = []
    for labels, buckets in cases:
        kwargs = {} if buckets is None else {"buckets": buckets}
        shown = f"estimate_series({labels}" + (f", buckets={buckets})" if buckets else ")")
        calls.append(
            Call(
                shown,
                "estimate_series",
                (labels,),
                kwargs,
                expected=estimate_series(labels, buckets),
                shown=shown,
            )
        )
    return calls


# --- running the submission's functions -----------------------------------------------------------
_SCRIPT = Path(__file__).with_name("kc_worker.py")


def call_functions(
    folder: Path, calls: Sequence[Call], *, timeout: float = 60.0
) -> list[dict[str, Any]]:
    """Run ``calls`` on the modules the notebook wrote in ``folder``, in a child interpreter.

    One result per call, in order: ``{"ok": True, "value": ...}`` or ``{"ok": False, "error": ...}``
    (the error's last traceback lines; every call errs alike when the child hangs or dies).
    """
    request = {"calls": [[c.module, c.function, list(c.args), dict(c.kwargs)] for c in calls]}
    try:
        done = subprocess.run(
            [sys.executable, "-P", str(_SCRIPT), str(folder)],
            cwd=folder,
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return [{"ok": False, "error": f"did not finish within {timeout:.0f} s"}] * len(calls)
    try:
        results: list[dict[str, Any]] = json.loads(done.stdout)["results"]
    except (ValueError, KeyError, TypeError):
        tail = " | ".join(done.stderr.strip().splitlines()[-2:]) or f"exit {done.returncode}"
        return [{"ok": False, "error": tail}] * len(calls)
    return results


def make_starter_files(folder: Path) -> list[Path]:
    """Remove solved copies of the notebook's modules from the release folder; return them.

    The notebook writes ``kc_*.py`` when it runs; a copy left in ``solutions/`` by a run there
    would otherwise ship, solved, with the starter.
    """
    removed = []
    for module in sorted(set(MODULES.values())):
        path = folder / f"{module}.py"
        if path.is_file():
            path.unlink()
            removed.append(path)
    return removed
