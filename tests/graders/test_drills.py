"""The incident drills: each passes on the capstone solution and fails on its mutant, naming the
missing signal; the drills' moments are seeded; the CLI lists and runs them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner

import lab_stack
from graders.drills import (
    DRILL_MUTANTS,
    DRILLS,
    FACTOR,
    LEAD_IN_JITTER_S,
    LEAD_IN_S,
    SOLUTION_NOTEBOOK,
    DrillResult,
    complete_folder,
    lead_in_s,
    main,
    mttd,
    mutant_folder,
    run_drill,
)
from graders.mutants import apply_mutant
from lab_stack.settings import PROJECT_ROOT, Settings


def test_lead_in_is_seeded_and_unannounced() -> None:
    """The lead-in is the same for the same seed, differs across seeds, and stays in its range."""
    for name in DRILLS:
        values = [lead_in_s(name, seed=s) for s in range(8)]
        assert values == [lead_in_s(name, seed=s) for s in range(8)]
        assert len(set(values)) > 1
        assert all(LEAD_IN_S <= v <= LEAD_IN_S + LEAD_IN_JITTER_S for v in values)


def test_budgets_are_stated_in_real_minutes_and_compressed_seconds() -> None:
    """At factor 60 a real-world minute is a lab second; every drill's watch covers its budget."""
    assert FACTOR == 60.0
    for drill in DRILLS.values():
        assert drill.budget_s == drill.budget_min
        assert drill.watch_s > drill.budget_s


def test_every_drill_has_a_mutant_that_applies_to_the_solution() -> None:
    """Each mutant's replacement occurs exactly once in the solution notebook's code cells."""
    assert set(DRILL_MUTANTS) == set(DRILLS)
    for name, mutant in DRILL_MUTANTS.items():
        nb = apply_mutant(nbformat.read(SOLUTION_NOTEBOOK, as_version=4), mutant)
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert all(new in code for _, new in mutant.replace), name
        assert mutant.aims == (name,)


def test_mttd_averages_the_detected_drills() -> None:
    """MTTD is the mean time to detect over the drills that detected at all."""
    a = DrillResult("uber-drift", "s", 0, 9.0, 30.0, 30.0, injected_at=100.0, detected_at=110.0)
    b = DrillResult(
        "netflix-latency", "s", 0, 9.0, 15.0, 15.0, injected_at=100.0, detected_at=104.0
    )
    c = DrillResult("airbnb-pipeline", "s", 0, 9.0, 30.0, 30.0, injected_at=100.0)
    assert mttd([a, b, c]) == pytest.approx(7.0)
    assert mttd([c]) is None
    assert c.ttd_s is None and b.ttd_min == pytest.approx(4.0)


def test_cli_lists_the_drills_without_a_name() -> None:
    """`python -m graders drill` lists the four drills with their budgets."""
    result = CliRunner().invoke(main, [], terminal_width=200)
    assert result.exit_code == 0
    for name in DRILLS:
        assert name in result.output
    assert "compressed" in result.output


def test_cli_refuses_an_unknown_drill_with_a_hint() -> None:
    """An unknown drill name exits non-zero and names the drills to choose from."""
    result = CliRunner().invoke(main, ["titanic"])
    assert result.exit_code != 0
    assert "Hint" in result.output and "uber-drift" in result.output


def test_make_drill_lists_and_forwards_the_name() -> None:
    """`make drill` lists; `make drill NAME=x` and `make drill x` run drill x (dry run)."""
    listing = subprocess.run(
        ["make", "-n", "drill"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    assert "-m graders drill" in listing.stdout
    for args in (["drill", "NAME=uber-drift"], ["drill", "uber-drift"]):
        dry = subprocess.run(
            ["make", "-n", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        )
        assert "-m graders drill uber-drift" in dry.stdout, dry.stdout


# --- against real processes -------------------------------------------------------------------
@pytest.fixture(scope="module")
def solution_folder(lab_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the capstone solution notebook completes (run once in a fresh kernel)."""
    return complete_folder(
        SOLUTION_NOTEBOOK, tmp_path_factory.mktemp("drills") / "capstone", settings=lab_settings
    )


@pytest.fixture(scope="module")
def solution_results(stack: lab_stack.Stack, solution_folder: Path) -> dict[str, DrillResult]:
    """Every drill, once, on the solution."""
    return {name: run_drill(name, solution_folder, stack, seed=1) for name in DRILLS}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(DRILLS))
def test_drill_passes_on_the_solution(name: str, solution_results: dict[str, DrillResult]) -> None:
    """The solution detects the incident within budget, with the right alert and its evidence,
    and raises no false alarm in the lead-in."""
    result = solution_results[name]
    assert result.problems == []
    assert result.ttd_s is not None and 0 < result.ttd_s <= DRILLS[name].budget_s
    assert result.alert_at is not None and result.evidence
    assert json.loads(json.dumps(result.to_dict(), default=str))["passed"] is True


@pytest.mark.slow
@pytest.mark.parametrize("name", list(DRILLS))
def test_drill_fails_on_its_mutant(
    name: str,
    stack: lab_stack.Stack,
    lab_settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """With the signal the drill needs removed, the drill fails and says which signal."""
    folder = mutant_folder(name, tmp_path_factory.mktemp(f"mutant-{name}"), settings=lab_settings)
    result = run_drill(name, folder, stack, seed=1)
    assert not result.passed
    assert any(
        ("undetected" in p or "past the budget" in p) and DRILLS[name].signal in p
        for p in result.problems
    ), result.problems


def test_the_drills_scenario_knobs_are_checked() -> None:
    """The shares the drills use are validated; defaults keep the old all-or-nothing behaviour."""
    from ml_service.errors import ScenarioError
    from ml_service.traffic import Scenario

    assert Scenario.named("gpu_memory_leak").oom_error_share == 1.0
    assert Scenario.named("feature_pipeline_failure").null_share == 1.0
    with pytest.raises(ScenarioError, match=r"null_share=0\.0 is not a share"):
        Scenario.named("feature_pipeline_failure", null_share=0.0)


def test_null_and_inference_error_shares_spread_evenly() -> None:
    """null_share=0.5 nulls every other lookup; inference_error_share=0.3 fails 3 in 10."""
    import requests

    from ml_service.serve import start_services

    with start_services() as svc:
        requests.post(
            f"{svc.feature_url}/_control",
            json={"null_features": ["avg_amount_30d"], "null_share": 0.5},
            timeout=5,
        ).raise_for_status()
        got = [
            requests.get(f"{svc.feature_url}/features/user-00001", timeout=5).json()["features"]
            for _ in range(10)
        ]
        assert sum(f["avg_amount_30d"] is None for f in got) == 5
        svc.gateway_control.inference_error = "CUDA out of memory"
        svc.gateway_control.inference_error_share = 0.3
        assert sum(svc.gateway_control.should_fail() for _ in range(10)) == 3
