"""Exercise 05's child process: imports the submission's ``drift.py`` / ``drift_job.py`` and runs them.

Run by :class:`graders.ex05_checks.Worker` as a script with ``python -P`` (so neither this folder
nor the ``graders`` package, whose import pulls in nbformat and jsonschema, is imported: the
child needs NumPy, pandas, SciPy and the submission only). The graded folder goes first on
``sys.path``.

* ``python -P graders/ex05_worker.py serve FOLDER`` — answer JSON requests
  (``{"command": "detect"|"job", "args": [...]}``), one per line on stdin, with one JSON line each
  on the original stdout; the submission's own output goes to stderr;
* ``python -P graders/ex05_worker.py detect FOLDER SEED`` — ``detect_drift`` on the held-out
  datasets of ``SEED``, next to their known answers (one JSON document);
* ``python -P graders/ex05_worker.py quality FOLDER SEED`` — ``check_data_quality`` (and
  ``detect_drift``) on the data-quality cases of ``SEED`` (:func:`quality_cases`), next to their
  known answers;
* ``python -P graders/ex05_worker.py job FOLDER PUSHGATEWAY_URL WINDOW_S NOW`` — one
  ``drift_job.run_once``; exit 1 with the error when it raises.
"""

from __future__ import annotations

import json
import math
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml_service.data import CATEGORICAL_FEATURES, FEATURES, SHIFT_SIZES
from ml_service.drift_data import DriftDataset, hard_cases, reference_and_current

__all__ = [
    "LARGE_N",
    "QUALITY_FIELDS",
    "QUALITY_KINDS",
    "REQUIRED_FIELDS",
    "QualityCase",
    "held_out_datasets",
    "quality_cases",
]

#: Attributes every per-feature result must carry.
REQUIRED_FIELDS = ("test", "statistic", "p_value", "effect_size", "drifted")
#: Attributes every per-feature data-quality result must carry.
QUALITY_FIELDS = ("missing_reference", "missing_current", "issues")
#: The kinds of data-quality issue, as pushed in ``ml_data_quality_issue{feature,kind}``.
QUALITY_KINDS = ("missing", "constant", "out_of_range")
#: Rows per frame of ``negligible_large_sample`` (the notebook uses the same). At 50 000 rows the
#: 0.02-sd shifts are significant on every seed tried (worst of 41 seeds: smallest p-value 3e-6;
#: seeds 0 and 50 517: 5e-13 and 2e-11) while their effect sizes stay near 0.02.
LARGE_N = 50_000


def held_out_datasets(seed: int, *, large_n: int = LARGE_N) -> dict[str, DriftDataset]:
    """The hard cases plus two random mixes of shifts, new categories and missing values."""
    cases = hard_cases(seed=seed, large_n=large_n)
    rng = np.random.default_rng(seed)
    sizes = list(SHIFT_SIZES)
    for i in range(2):
        shifts = {f: str(rng.choice(sizes)) for f in FEATURES}
        cases[f"random_{i}"] = reference_and_current(
            seed=seed + 10 + i,
            shifts=shifts,
            new_categories={"channel": ("wallet", 0.2)} if i == 0 else None,
            missing_current={"account_age_days": 0.15, "merchant_category": 0.1},
            name=f"random_{i}",
        )
    return cases


class QualityCase:
    """A reference and a current frame with known data-quality issues per feature."""

    def __init__(self, data: DriftDataset, issues: dict[str, list[str]]) -> None:
        self.data = data
        #: feature -> the kinds that must be flagged (features not named: none)
        self.issues = {f: sorted(k) for f, k in issues.items()}

    @property
    def incident(self) -> bool:
        """The known answer at the dataset level: any feature flagged."""
        return bool(self.issues)

    def missing_shares(self) -> dict[str, tuple[float, float]]:
        """feature -> (reference, current) share of rows where it is missing: the known shares."""
        ref, cur = self.data.reference, self.data.current
        return {f: (float(ref[f].isna().mean()), float(cur[f].isna().mean())) for f in ref.columns}


def quality_cases(seed: int, *, n: int = 4_000) -> dict[str, QualityCase]:
    """Windows with known data-quality answers; the observed values keep the reference's law.

    * ``clean`` — nothing wrong;
    * ``null_30`` — ``avg_amount_30d`` missing (completely at random) in 30% of the window: its
      observed values are unchanged, so no drift, but a data-quality incident;
    * ``same_missing`` — 10% missing in three features in the reference *and* the window: fine;
    * ``slight_missing`` — 2% missing where the reference had none: under the 5-point margin;
    * ``constant`` — ``txn_count_24h`` stuck at 0.0 and ``channel`` at ``online`` on every row;
    * ``out_of_range`` — ``hour`` is the sentinel -1 on 30% of rows, ``device_age_days`` arrives
      in hours instead of days;
    * ``pipeline_failure`` — the lab's scenario, a window inside it: ``avg_amount_30d`` null on
      every row, ``txn_count_24h`` constant 0.0;
    * ``drift_only`` — large covariate drift on four features: drift, not a data-quality issue.
    """

    def draw(name: str, offset: int, **kwargs: Any) -> DriftDataset:
        return reference_and_current(
            seed=seed + 200 + offset, n_reference=n, n_current=n, name=name, **kwargs
        )

    rng = np.random.default_rng(seed + 200)
    cases: dict[str, QualityCase] = {}
    cases["clean"] = QualityCase(draw("clean", 0), {})
    cases["null_30"] = QualityCase(
        draw("null_30", 1, missing_current={"avg_amount_30d": 0.3}), {"avg_amount_30d": ["missing"]}
    )
    same = {"distance_from_home_km": 0.1, "channel": 0.1, "txn_count_24h": 0.1}
    cases["same_missing"] = QualityCase(
        draw("same_missing", 2, missing_reference=same, missing_current=same), {}
    )
    cases["slight_missing"] = QualityCase(
        draw("slight_missing", 3, missing_current={"amount": 0.02}), {}
    )
    constant = draw("constant", 4)
    constant.current["txn_count_24h"] = 0.0
    constant.current["channel"] = "online"
    cases["constant"] = QualityCase(
        constant, {"txn_count_24h": ["constant"], "channel": ["constant"]}
    )
    wrong = draw("out_of_range", 5)
    sentinel = rng.random(len(wrong.current)) < 0.3
    wrong.current["hour"] = wrong.current["hour"].where(~sentinel, -1.0)
    wrong.current["device_age_days"] = wrong.current["device_age_days"] * 24.0
    cases["out_of_range"] = QualityCase(
        wrong, {"hour": ["out_of_range"], "device_age_days": ["out_of_range"]}
    )
    failure = draw("pipeline_failure", 6)
    failure.current["avg_amount_30d"] = pd.Series([None] * len(failure.current), dtype=object)
    failure.current["txn_count_24h"] = 0.0
    cases["pipeline_failure"] = QualityCase(
        failure, {"avg_amount_30d": ["missing"], "txn_count_24h": ["constant"]}
    )
    shifts = {
        "amount": "large",
        "device_age_days": "large",
        "account_age_days": "large",
        "merchant_category": "large",
    }
    cases["drift_only"] = QualityCase(draw("drift_only", 7, shifts=shifts), {})
    return cases


def _quality_row(result: Any, feature: str) -> dict[str, Any]:
    item = result.features[feature]
    if isinstance(item, dict):
        row = {k: item.get(k) for k in QUALITY_FIELDS}
    else:
        row = {k: getattr(item, k, None) for k in QUALITY_FIELDS}
    issues = row["issues"]
    row["issues"] = (
        sorted(str(k) for k in issues) if isinstance(issues, (list, tuple, set)) else None
    )
    return {k: v if k == "issues" else _clean(v) for k, v in row.items()}


def _quality(seed: int) -> dict[str, Any]:
    from drift import check_data_quality, detect_drift  # the submission's module

    out: dict[str, Any] = {"cases": {}}
    for name, case in quality_cases(seed).items():
        ds = case.data
        result = check_data_quality(ds.reference, ds.current)
        try:
            drifted: list[str] | None = sorted(
                detect_drift(ds.reference, ds.current).drifted_features
            )
            drift_error = None
        except Exception as exc:  # reported per case: the data-quality answer still counts
            drifted, drift_error = None, _error_tail(exc)
        rows = {f: _quality_row(result, f) for f in ds.features}
        out["cases"][name] = {
            "features": rows,
            "incident": bool(result.incident),
            "truth": case.issues,
            "truth_incident": case.incident,
            "shares": {f: list(v) for f, v in case.missing_shares().items()},
            "drifted": drifted,
            "drift_error": drift_error,
        }
    return out


def _result_row(result: Any, feature: str) -> dict[str, Any]:
    item = result.features[feature]
    if isinstance(item, dict):
        return {k: item.get(k) for k in REQUIRED_FIELDS}
    return {k: getattr(item, k, None) for k in REQUIRED_FIELDS}


def _clean(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    return None if value is None else str(value)


def _detect(seed: int) -> dict[str, Any]:
    from drift import detect_drift  # the submission's module, from the graded folder

    out: dict[str, Any] = {"datasets": {}}
    for name, ds in held_out_datasets(seed).items():
        result = detect_drift(ds.reference, ds.current)
        rows = {f: {k: _clean(v) for k, v in _result_row(result, f).items()} for f in ds.features}
        out["datasets"][name] = {
            "features": rows,
            "flagged": sorted(f for f, r in rows.items() if r["drifted"]),
            "truth": ds.drifted_features,
            "dataset_drift": bool(result.dataset_drift),
            "truth_dataset": ds.dataset_drifted(),
        }
    # renaming categories must not change a categorical test (an order-free test)
    ds = reference_and_current(
        seed=seed + 99, shifts={"merchant_category": "small"}, n_current=3_000
    )
    cats = sorted(ds.reference["merchant_category"].unique())
    perm = np.random.default_rng(seed).permutation(len(cats))
    rename = {c: f"cat_{perm[i]:02d}" for i, c in enumerate(cats)}
    renamed = [
        frame.assign(merchant_category=frame["merchant_category"].map(rename))
        for frame in (ds.reference, ds.current)
    ]
    before = _result_row(detect_drift(ds.reference, ds.current), "merchant_category")
    after = _result_row(detect_drift(*renamed), "merchant_category")
    out["renaming"] = {"before": _clean(before["p_value"]), "after": _clean(after["p_value"])}
    out["categorical"] = list(CATEGORICAL_FEATURES)
    return out


def _job(pushgateway_url: str, window_s: float, now: float) -> dict[str, Any]:
    import drift_job  # the submission's module, from the graded folder

    result = drift_job.run_once(pushgateway_url, window_s=window_s, now=now)
    quality = getattr(result, "quality", None)
    return {
        "drifted_features": sorted(result.drifted_features),
        "dataset_drift": bool(result.dataset_drift),
        "data_quality_incident": None if quality is None else bool(quality.incident),
    }


def _run(command: str, args: list[Any]) -> dict[str, Any]:
    if command == "detect":
        return _detect(int(args[0]))
    if command == "quality":
        return _quality(int(args[0]))
    if command == "job":
        return _job(str(args[0]), float(args[1]), float(args[2]))
    raise ValueError(f"unknown command {command!r}. Hint: use detect, quality or job.")


def _error_tail(exc: BaseException) -> str:
    """The last three lines of the traceback: where the submission raised, and what."""
    lines = "".join(traceback.format_exception(exc)).strip().splitlines()
    return " | ".join(lines[-3:])


def _serve() -> int:
    # answers go to the original stdout; anything else written to fd 1 (a student's print, a C
    # library) goes to stderr, so it cannot corrupt the channel
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            answer = {"ok": True, **_run(request["command"], request["args"])}
        except BaseException as exc:  # the submission's error, whatever it is, is the answer
            if isinstance(exc, KeyboardInterrupt):
                raise
            answer = {"ok": False, "error": _error_tail(exc)}
        channel.write(json.dumps(answer) + "\n")
    return 0


def _main(argv: list[str]) -> int:
    command, folder = argv[0], Path(argv[1])
    sys.path.insert(0, str(folder))
    if command == "serve":
        return _serve()
    out = _run(command, argv[2:])
    print(json.dumps(out))  # noqa: T201 - the child's answer to the grader
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
