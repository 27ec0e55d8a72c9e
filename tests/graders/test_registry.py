"""The registry is the one source of points: notebooks, nbgrader metadata and mutants agree with it."""

from __future__ import annotations

import nbformat
import pytest

import graders
from graders import exercise, exercise_numbers, grader_keys
from graders.context import scope_query
from graders.errors import UnknownExercise
from graders.mutants import apply_mutant
from graders.release import stale_notebooks
from lab_stack.settings import PROJECT_ROOT

NUMBERS = grader_keys()


def test_public_names_are_pinned() -> None:
    """The package exports exactly its documented names."""
    assert sorted(graders.__all__) == sorted(
        [
            "Check",
            "CheckFailed",
            "CheckResult",
            "Exercise",
            "GradingError",
            "Mutant",
            "Report",
            "SubmissionError",
            "UnknownExercise",
            "check",
            "exercise",
            "exercise_numbers",
            "grade",
            "grader_keys",
            "nbcheck",
            "record_answers",
        ]
    )


def test_exercise_lookup_accepts_number_or_folder_and_rejects_unknown() -> None:
    """`02`, `2` and `ex02_metrics` name the same exercise; an unknown one raises with a hint."""
    assert exercise("2") is exercise("02") is exercise("ex02_metrics")
    with pytest.raises(UnknownExercise, match="Hint"):
        exercise("97")
    with pytest.raises(UnknownExercise, match="Hint"):
        exercise("no such thing")


def test_grader_keys_list_the_exercises_then_the_assessments() -> None:
    """Numbered exercises first, in order; the assessments after them; each key resolves."""
    keys = grader_keys()
    numbers = exercise_numbers()
    assert keys[: len(numbers)] == numbers == sorted(numbers)
    assert set(keys[len(numbers) :]) <= {"capstone", "kc"}
    for key in keys:
        ex = exercise(key)
        assert ex.number == key
        assert ex.slug == (f"ex{key}" if key.isdigit() else key)
        assert exercise(ex.folder) is ex


def _grade_cells(path: object) -> dict[str, tuple[float, str]]:
    nb = nbformat.read(path, as_version=4)
    out = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            out[meta["grade_id"]] = (float(meta.get("points", 0)), cell.source)
    return out


@pytest.mark.parametrize("number", NUMBERS)
@pytest.mark.parametrize("tree", ["solutions", "notebooks"])
def test_autograder_cell_points_match_the_registry(number: str, tree: str) -> None:
    """Every check has one autograder cell whose nbgrader points equal the registry's."""
    ex = exercise(number)
    folder = ex.solution_dir(PROJECT_ROOT) if tree == "solutions" else ex.release_dir(PROJECT_ROOT)
    cells = _grade_cells(folder / ex.notebook)
    assert {gid: pts for gid, (pts, _) in cells.items()} == {
        c.grade_id: c.points for c in ex.checks.values()
    }
    for check in ex.checks.values():
        source = cells[check.grade_id][1]
        if check.hidden and tree == "notebooks":
            assert check.name not in source  # hidden tests are stripped from the release
        else:
            assert f'graders.nbcheck("{number}", "{check.name}")' in source


@pytest.mark.parametrize("number", NUMBERS)
@pytest.mark.parametrize("tree", ["solutions", "notebooks"])
def test_notebooks_are_committed_without_outputs(number: str, tree: str) -> None:
    """No code cell of a committed notebook carries outputs or an execution count."""
    ex = exercise(number)
    folder = PROJECT_ROOT / tree / ex.folder
    nb = nbformat.read(folder / ex.notebook, as_version=4)
    assert [
        c.outputs for c in nb.cells if c.cell_type == "code" and (c.outputs or c.execution_count)
    ] == []


@pytest.mark.parametrize("number", NUMBERS)
def test_every_mutant_applies_to_the_solution(number: str) -> None:
    """Each mutant's replacements occur exactly once in the solution and change it."""
    ex = exercise(number)
    assert ex.mutants, "each exercise declares mutants"
    for mutant in ex.mutants:
        nb = nbformat.read(ex.solution_dir(PROJECT_ROOT) / ex.notebook, as_version=4)
        before = [c.source for c in nb.cells]
        assert [c.source for c in apply_mutant(nb, mutant).cells] != before


def test_release_notebooks_are_not_stale() -> None:
    """notebooks/ is what `make notebooks` generates from solutions/ (run it after editing a solution)."""
    assert stale_notebooks() == []


def test_scope_query_restricts_every_metric_selector_to_the_instances() -> None:
    """Metric selectors get an instance matcher; functions, labels and strings are left alone."""
    expr = 'sum by (status) (rate(ml_predictions_total{status="error"}[5m])) / sum(rate(ml_predictions_total[5m]))'
    assert scope_query(expr, ["h:1"]) == (
        'sum by (status) (rate(ml_predictions_total{instance=~"h:1",status="error"}[5m]))'
        ' / sum(rate(ml_predictions_total{instance=~"h:1"}[5m]))'
    )
    assert scope_query("histogram_quantile(0.9, x)", ["h:1"]) == "histogram_quantile(0.9, x)"
