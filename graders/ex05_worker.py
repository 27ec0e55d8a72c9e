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

from ml_service.data import CATEGORICAL_FEATURES, FEATURES, SHIFT_SIZES
from ml_service.drift_data import DriftDataset, hard_cases, reference_and_current

__all__ = ["LARGE_N", "REQUIRED_FIELDS", "held_out_datasets"]

#: Attributes every per-feature result must carry.
REQUIRED_FIELDS = ("test", "statistic", "p_value", "effect_size", "drifted")
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
    return {
        "drifted_features": sorted(result.drifted_features),
        "dataset_drift": bool(result.dataset_drift),
    }


def _run(command: str, args: list[Any]) -> dict[str, Any]:
    if command == "detect":
        return _detect(int(args[0]))
    if command == "job":
        return _job(str(args[0]), float(args[1]), float(args[2]))
    raise ValueError(f"unknown command {command!r}. Hint: use detect or job.")


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
