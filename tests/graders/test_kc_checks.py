"""The knowledge check's answer key and held-out inputs are right, and its function checks judge well.

Cheap proofs beside tests/graders/test_validity.py (which grades whole notebooks): the reference
``bucket_quantile`` is what Prometheus's own ``histogram_quantile`` returns; the held-out KS pairs
make the decision depend on ``alpha``; the function checks pass on the solution's modules (cut out
of its ``%%writefile`` cells) and fail on each function mutant, without a notebook run.
"""

from __future__ import annotations

import math
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import httpx
import nbformat
import numpy as np
import pytest
from scipy import stats

import graders.test_kc_knowledge_check as kc
import lab_stack
from graders import exercise
from graders.errors import CheckFailed
from graders.kc_checks import (
    EXAMPLE_BUCKETS,
    HELD_OUT_SEED,
    MODULES,
    PUBLIC_SEED,
    WASSERSTEIN_A,
    WASSERSTEIN_B,
    Call,
    bucket_quantile,
    call_functions,
    error_budget_minutes,
    estimate_series,
    ks_cases,
    make_starter_files,
    quantile_cases,
)
from graders.mutants import apply_mutant
from graders.release import generate, stale_notebooks
from lab_stack.clients.pushgateway import PushgatewayClient, group_path
from lab_stack.settings import PROJECT_ROOT

EX = exercise("kc")
NOTEBOOK = EX.solution_dir(PROJECT_ROOT) / EX.notebook
#: The function checks and the mutants aimed at them (the others need recorded answers or a stack).
FUNCTION_CHECKS = {
    "bucket_quantile": kc.test_bucket_quantile,
    "bucket_quantile_held_out": kc.test_bucket_quantile_held_out,
    "ks_drift": kc.test_ks_drift,
    "ks_drift_held_out": kc.test_ks_drift_held_out,
    "error_budget_held_out": kc.test_error_budget_held_out,
    "series_count": kc.test_series_count,
    "series_count_held_out": kc.test_series_count_held_out,
}
FUNCTION_MUTANTS = [m.name for m in EX.mutants if set(m.aims) <= set(FUNCTION_CHECKS) and m.aims]


def write_modules(folder: Path, mutant: str | None = None) -> Path:
    """Write the kc_*.py modules as the (mutated) solution's %%writefile cells would."""
    nb = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    if mutant is not None:
        nb = apply_mutant(nb, next(m for m in EX.mutants if m.name == mutant))
    folder.mkdir(parents=True, exist_ok=True)
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith("%%writefile "):
            header, _, body = cell.source.partition("\n")
            (folder / header.split()[1]).write_text(body + "\n")
    return folder


def state_over(folder: Path) -> kc.KcState:
    """A grading state over ``folder`` with no stack (the function checks never use one)."""
    ctx = SimpleNamespace(
        workdir=folder, stack=None, kernel_pid=0, finished_at=time.time(), cache={}
    )
    return kc.KcState(ctx)  # type: ignore[arg-type]


def test_reference_quantile_examples() -> None:
    """The notebook's worked example: interpolation inside a bucket, and the +Inf rule."""
    assert bucket_quantile(0.95, EXAMPLE_BUCKETS) == pytest.approx(0.8125)
    assert bucket_quantile(0.5, EXAMPLE_BUCKETS) == pytest.approx(0.15)
    assert bucket_quantile(0.99, EXAMPLE_BUCKETS) == 1.0
    assert math.isnan(bucket_quantile(0.5, [(1.0, 0), (math.inf, 0)]))


@pytest.mark.slow
def test_reference_quantile_is_what_prometheus_computes(stack: lab_stack.Stack) -> None:
    """On every public and held-out histogram, the reference equals Prometheus's histogram_quantile."""
    cases = quantile_cases(PUBLIC_SEED) + quantile_cases(HELD_OUT_SEED)
    histograms = {tuple(map(tuple, c.args[1])): [] for c in cases}
    for c in cases:
        histograms[tuple(map(tuple, c.args[1]))].append(c)
    instance = f"kc-ref-{uuid.uuid4().hex[:8]}"
    lines = ["# TYPE kc_ref_bucket gauge"]
    for h, buckets in enumerate(histograms):
        for le, count in buckets:
            le_text = "+Inf" if math.isinf(le) else repr(le)
            lines.append(f'kc_ref_bucket{{histogram="{h}",le="{le_text}"}} {count}')
    url = stack.url("pushgateway") + group_path("kc_ref", {"instance": instance})
    httpx.put(url, content="\n".join(lines) + "\n", trust_env=False, timeout=10).raise_for_status()
    try:
        prom = stack.prometheus
        selector = f'kc_ref_bucket{{instance="{instance}"}}'
        prom.wait_for(f"count({selector}) == {len(lines) - 1}", timeout=15)
        for h, calls in enumerate(histograms.values()):
            for call in calls:
                q = call.args[0]
                expr = f'histogram_quantile({q}, kc_ref_bucket{{instance="{instance}",histogram="{h}"}})'
                assert prom.query_value(expr) == pytest.approx(call.expected, rel=1e-9), call.name
    finally:
        with PushgatewayClient(stack.url("pushgateway")) as pgw:
            pgw.delete_group("kc_ref", {"instance": instance})


@pytest.mark.parametrize("seed", [PUBLIC_SEED, HELD_OUT_SEED])
def test_ks_cases_expect_scipys_decision_and_depend_on_alpha(seed: int) -> None:
    """Expected = KS p < alpha; two pairs sit between levels, so a fixed alpha gets some wrong."""
    calls = ks_cases(seed)
    for call in calls:
        level = call.kwargs.get("alpha", 0.05)
        assert call.expected == (stats.ks_2samp(*call.args).pvalue < level), call.name
    fixed = [c for c in calls if c.expected != (stats.ks_2samp(*c.args).pvalue < 0.05)]
    assert len(fixed) >= 2  # a hard-coded 0.05 fails at least these
    assert {c.expected for c in calls} == {True, False}


def test_references_of_budget_and_series() -> None:
    """The textbook numbers: 43.2 minutes for 99.9 % over 30 days; series multiply."""
    assert error_budget_minutes(0.999, 30) == pytest.approx(43.2)
    assert error_budget_minutes(0.995, 28) == pytest.approx(201.6)
    assert estimate_series({}) == 1
    assert estimate_series({"model_name": 3, "status": 3}) == 9
    assert estimate_series({"model_name": 3, "status": 3}, buckets=10) == 117


def test_wasserstein_samples_separate_the_distance_from_the_mean_difference() -> None:
    """The Q6 samples make a difference-of-means answer clearly wrong."""
    distance = stats.wasserstein_distance(WASSERSTEIN_A, WASSERSTEIN_B)
    means = abs(np.mean(WASSERSTEIN_A) - np.mean(WASSERSTEIN_B))
    assert distance == pytest.approx(1.86)
    assert abs(distance - means) > 1.0


def test_call_functions_reports_values_errors_and_hangs(tmp_path: Path) -> None:
    """Values come back JSON-clean, a raising call reports its error, a hang costs only the timeout."""
    (tmp_path / "kc_series.py").write_text(
        "import time\nimport numpy as np\n"
        "def estimate_series(labels, buckets=None):\n"
        "    print('noise on stdout')\n"
        "    if buckets == -1:\n        time.sleep(60)\n"
        "    if not labels:\n        raise ValueError('no labels')\n"
        "    return np.int64(len(labels))\n"
    )
    calls = [
        Call("two", "estimate_series", ({"a": 1, "b": 2},), expected=2),
        Call("none", "estimate_series", ({},), expected=1),
    ]
    ok, raised = call_functions(tmp_path, calls)
    assert ok == {"ok": True, "value": 2}
    assert not raised["ok"] and "ValueError: no labels" in raised["error"]
    hang = call_functions(
        tmp_path, [Call("hang", "estimate_series", ({"a": 1},), {"buckets": -1})], timeout=3
    )
    assert hang == [{"ok": False, "error": "did not finish within 3 s"}]


def test_function_checks_pass_on_the_solutions_modules(tmp_path: Path) -> None:
    """Every function check passes on the modules the solution notebook writes."""
    state = state_over(write_modules(tmp_path))
    for name, check in FUNCTION_CHECKS.items():
        check(state)  # raises CheckFailed on a wrong verdict
        assert name in EX.checks


def test_function_checks_fail_without_the_modules(tmp_path: Path) -> None:
    """No module written: each function check says which %%writefile cell to run."""
    state = state_over(tmp_path)
    with pytest.raises(CheckFailed, match=r"kc_quantile\.py.*Hint: complete and run"):
        kc.test_bucket_quantile(state)


@pytest.mark.parametrize("mutant", FUNCTION_MUTANTS)
def test_function_mutant_fails_its_checks(mutant: str, tmp_path: Path) -> None:
    """Each mutant of a written function fails every check aimed at it, with a hint."""
    state = state_over(write_modules(tmp_path, mutant))
    aims = next(m for m in EX.mutants if m.name == mutant).aims
    for aim in aims:
        with pytest.raises(CheckFailed, match="Hint:"):
            FUNCTION_CHECKS[aim](state)


def test_make_starter_removes_solved_modules(tmp_path: Path) -> None:
    """Solved kc_*.py files left next to the notebook do not ship with the starter."""
    write_modules(tmp_path)
    (tmp_path / "keep.txt").write_text("x")
    removed = make_starter_files(tmp_path)
    assert sorted(p.name for p in removed) == sorted(f"{m}.py" for m in set(MODULES.values()))
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


@pytest.mark.slow
def test_release_keeps_the_lecture_copy_and_reports_it_stale(tmp_path: Path) -> None:
    """Generating knowledge_check writes lecture/knowledge_check.ipynb; an edited copy is stale."""
    import shutil

    shutil.copy(PROJECT_ROOT / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    shutil.copytree(EX.solution_dir(PROJECT_ROOT), tmp_path / "solutions" / EX.folder)
    written = generate([EX.folder], root=tmp_path)
    copy = tmp_path / "lecture" / EX.notebook
    assert copy in written
    assert copy.read_bytes() == (tmp_path / "notebooks" / EX.folder / EX.notebook).read_bytes()
    nb = nbformat.read(copy, as_version=4)  # type: ignore[no-untyped-call]
    nb.cells[0].source += "\nedited by hand"
    nbformat.write(nb, copy)  # type: ignore[no-untyped-call]
    assert stale_notebooks(tmp_path) == [f"lecture/{EX.notebook} (cells differ)"]
