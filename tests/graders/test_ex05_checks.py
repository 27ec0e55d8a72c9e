"""Exercise 05's offline checks are right: the solution's files pass them, each offline mutant fails its aim.

Cheap proofs (no notebook run, no stack): the file a check reads is cut out of the solution
notebook's ``%%writefile`` cell, mutated the way ``graders.mutants`` would, and the check is run on
it. The live checks (and the per-run grouping-key and retraining data-quality-alert mutants) are
proven by tests/graders/test_validity.py.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nbformat
import pytest

import graders.test_ex05_drift as ex05
from graders import exercise
from graders.errors import CheckFailed
from graders.ex05_checks import LARGE_N, Worker, quality_cases
from graders.mutants import apply_mutant
from lab_stack.settings import PROJECT_ROOT

EX = exercise("05")
NOTEBOOK = EX.solution_dir(PROJECT_ROOT) / EX.notebook


def written_file(name: str, mutant: str | None, folder: Path) -> Path:
    """Write ``name`` as the (mutated) solution's ``%%writefile name`` and ``-a`` cells would."""
    nb = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    if mutant is not None:
        nb = apply_mutant(nb, next(m for m in EX.mutants if m.name == mutant))
    text = ""
    for cell in nb.cells:
        if cell.source.startswith(f"%%writefile {name}\n"):
            text = cell.source.split("\n", 1)[1]
        elif cell.source.startswith(f"%%writefile -a {name}\n"):
            text += cell.source.split("\n", 1)[1]
    assert text, f"no %%writefile {name} cell"
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def detections(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """detect_drift of the solution and of the two detector mutants, on the public and hidden seeds."""

    def detect(variant: str | None) -> dict[str, Any]:
        folder = tmp_path_factory.mktemp(variant or "solution")
        written_file("drift.py", variant, folder)
        with Worker(folder) as worker:  # one child per variant, both seeds
            return {
                "public": worker.call("detect", ex05.PUBLIC_SEED, timeout=120.0),
                "held_out": worker.call("detect", ex05.HELD_OUT_SEED, timeout=120.0),
            }

    variants = (None, "ks_on_categorical", "p_value_only")
    with ThreadPoolExecutor(len(variants)) as pool:  # the three children run side by side
        return dict(zip(("solution", *variants[1:]), pool.map(detect, variants), strict=True))


QUALITY_MUTANTS = ("missing_dropped_first", "missing_over_present_rows", "missing_over_all_cells")


@pytest.fixture(scope="module")
def qualities(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """check_data_quality of the solution and of the data-quality mutants, on both seeds."""

    def run(variant: str | None) -> dict[str, Any]:
        folder = tmp_path_factory.mktemp(variant or "solution")
        written_file("drift.py", variant, folder)
        with Worker(folder) as worker:
            return {
                "public_quality": worker.call("quality", ex05.PUBLIC_SEED, timeout=120.0),
                "held_out_quality": worker.call("quality", ex05.HELD_OUT_SEED, timeout=120.0),
            }

    variants = (None, *QUALITY_MUTANTS)
    with ThreadPoolExecutor(2) as pool:
        return dict(zip(("solution", *QUALITY_MUTANTS), pool.map(run, variants), strict=True))


def quality_state(data: dict[str, Any]) -> ex05.Ex05State:
    """A real Ex05State whose worker answers are precomputed (its cache holds them)."""
    state = ex05.Ex05State.__new__(ex05.Ex05State)
    state.ctx = SimpleNamespace(  # type: ignore[assignment]
        cache={
            f"quality-{ex05.PUBLIC_SEED}": data["public_quality"],
            f"quality-{ex05.HELD_OUT_SEED}": data["held_out_quality"],
        }
    )
    return state


def state_of(data: dict[str, Any]) -> SimpleNamespace:
    """A stand-in for Ex05State carrying precomputed detections."""
    return SimpleNamespace(public=data["public"], held_out=data["held_out"])


DETECT_CHECKS = ["public_decisions", "huge_sample", "categorical_test", "held_out_decisions"]


@pytest.mark.parametrize("check", DETECT_CHECKS)
def test_solution_detector_passes(check: str, detections: dict[str, dict[str, Any]]) -> None:
    """The solution's detect_drift passes every held-out decision check."""
    EX.checks[check].fn(state_of(detections["solution"]))


@pytest.mark.parametrize(
    ("mutant", "check"),
    [
        (m.name, aim)
        for m in EX.mutants
        if m.name in ("ks_on_categorical", "p_value_only")
        for aim in m.aims
    ],
)
def test_detector_mutant_fails_its_check(
    mutant: str, check: str, detections: dict[str, dict[str, Any]]
) -> None:
    """KS on categories and p-value-only decisions fail the checks aimed at them, with a hint."""
    with pytest.raises(CheckFailed, match="Hint:"):
        EX.checks[check].fn(state_of(detections[mutant]))


QUALITY_CHECKS = [
    "missing_share_values",
    "pipeline_failure_flagged",
    "quality_decisions",
    "quality_held_out",
]


@pytest.mark.parametrize("check", QUALITY_CHECKS)
def test_solution_data_quality_passes(check: str, qualities: dict[str, dict[str, Any]]) -> None:
    """The solution's check_data_quality passes every held-out data-quality check."""
    EX.checks[check].fn(quality_state(qualities["solution"]))


@pytest.mark.parametrize(
    ("mutant", "check"),
    [(m.name, aim) for m in EX.mutants if m.name in QUALITY_MUTANTS for aim in m.aims],
)
def test_data_quality_mutant_fails_its_check(
    mutant: str, check: str, qualities: dict[str, dict[str, Any]]
) -> None:
    """Missing shares ignored or over the wrong denominator fail the checks aimed at them, with a hint."""
    with pytest.raises(CheckFailed, match="Hint:"):
        EX.checks[check].fn(quality_state(qualities[mutant]))


def test_quality_cases_know_their_answers() -> None:
    """The grader's data-quality cases: the known missing shares and issues are what was injected."""
    cases = quality_cases(ex05.HELD_OUT_SEED)
    assert cases["clean"].issues == {} and not cases["clean"].incident
    shares = cases["null_30"].missing_shares()
    assert shares["amount"] == (0.0, 0.0)
    assert 0.27 < shares["avg_amount_30d"][1] < 0.33 and shares["avg_amount_30d"][0] == 0.0
    same = cases["same_missing"].missing_shares()["channel"]
    assert abs(same[0] - same[1]) < 0.03 and same[0] > 0.07
    failure = cases["pipeline_failure"]
    assert failure.missing_shares()["avg_amount_30d"] == (0.0, 1.0)
    assert failure.data.current["txn_count_24h"].nunique() == 1
    assert failure.issues == {"avg_amount_30d": ["missing"], "txn_count_24h": ["constant"]}
    assert (cases["out_of_range"].data.current["hour"] == -1.0).mean() > 0.25


@pytest.mark.parametrize(("mutant", "passes"), [(None, True), ("alert_on_p_value", False)])
def test_alert_rules_are_unit_tested_with_promtool(
    mutant: str | None, passes: bool, tmp_path: Path
) -> None:
    """The solution's DataDriftDetected stays silent on significant p-values; the raw p-value rule fires."""
    written_file("alert_rules.yml", mutant, tmp_path)
    state = SimpleNamespace(ctx=SimpleNamespace(workdir=tmp_path))
    if passes:
        ex05.test_alert_on_decision(state)  # type: ignore[arg-type]
    else:
        with pytest.raises(CheckFailed, match="FAILED"):
            ex05.test_alert_on_decision(state)  # type: ignore[arg-type]


def test_every_mutant_applies_once() -> None:
    """Each mutant's replacements occur exactly once in the solution's code cells."""
    for mutant in EX.mutants:
        nb = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
        apply_mutant(nb, mutant)
    assert {m.name for m in EX.mutants} == {
        "ks_on_categorical",
        "p_value_only",
        "per_run_grouping_key",
        "alert_on_p_value",
        "missing_dropped_first",
        "missing_over_present_rows",
        "missing_over_all_cells",
        "quality_alert_retrains",
    }


def test_notebook_uses_the_graders_large_sample() -> None:
    """The notebook's hard cases are the grader's public ones: same seed, same large-sample size."""
    nb = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    setup = next(c.source for c in nb.cells if "hard_cases(" in c.source)
    assert f"hard_cases(seed={ex05.PUBLIC_SEED}, large_n={LARGE_N:_})" in setup


def test_worker_reports_errors_and_timeouts_and_recovers(tmp_path: Path) -> None:
    """A raising call returns its error, a hanging one is killed at its timeout, the next call works."""
    (tmp_path / "drift_job.py").write_text(
        "import time\n"
        "def run_once(url, *, window_s, now):\n"
        "    print('noise on stdout')\n"
        "    if window_s < 0:\n"
        "        time.sleep(60)\n"
        "    raise ValueError(f'empty window {window_s}. Hint: none')\n"
    )
    with Worker(tmp_path) as worker:
        raised = worker.call("job", "http://127.0.0.1:9", 5.0, 0.0, timeout=120.0)
        assert raised["ok"] is False and "ValueError: empty window 5.0" in raised["error"]
        hung = worker.call("job", "http://127.0.0.1:9", -1.0, 0.0, timeout=1.0)
        assert hung == {"ok": False, "error": "did not finish within 1 s"}
        again = worker.call("job", "http://127.0.0.1:9", 7.0, 0.0, timeout=120.0)
        assert again["ok"] is False and "empty window 7.0" in again["error"]
