"""The graders are right: solutions pass, starters score zero, mutants fail the check aimed at them.

Every exercise with a grader module (graders/test_exNN_*.py) is picked up, with its mutants.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

from graders import Report, exercise, grader_keys
from graders.release import venv_env
from lab_stack.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.slow

NUMBERS = grader_keys()
MUTANTS = [(n, m.name) for n in NUMBERS for m in exercise(n).mutants]


@pytest.mark.parametrize("number", NUMBERS)
def test_solution_passes_every_check(number: str, grade_variant: Callable[..., Report]) -> None:
    """The solution notebook, graded in a fresh kernel, earns every point of every check."""
    report = grade_variant(number, "solution")
    failed = {r.name: r.message for r in report.results if not r.passed}
    assert report.notebook_ok, report.reason
    assert failed == {}
    assert report.score == report.max_score == exercise(number).total_points


@pytest.mark.parametrize("number", NUMBERS)
def test_starter_scores_zero(number: str, grade_variant: Callable[..., Report]) -> None:
    """The untouched release notebook scores zero and the grade names the cell that raised."""
    report = grade_variant(number, "starter")
    assert report.score == 0
    assert not report.passed
    assert report.reason is not None and "NotImplementedError" in report.reason


@pytest.mark.parametrize(("number", "mutant"), MUTANTS)
def test_mutant_fails_the_check_aimed_at_it(
    number: str, mutant: str, grade_variant: Callable[..., Report]
) -> None:
    """Each plausible wrong answer fails the checks it aims at, with a message that says why."""
    aims = next(m for m in exercise(number).mutants if m.name == mutant).aims
    report = grade_variant(number, mutant, only=aims)
    assert report.notebook_ok, report.reason
    results = {r.name: r for r in report.results}
    for name in aims:
        assert not results[name].passed, f"{mutant} passed {name}"
        assert "Hint:" in results[name].message


@pytest.mark.parametrize("number", NUMBERS)
def test_solution_runs_under_papermill_and_its_check_cell_passes(
    number: str,
    lab_settings: Settings,
    stack: object,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """papermill runs the solution in the workbook kernel; its own check cell reports all public checks passed."""
    import papermill

    ex = exercise(number)
    work = tmp_path / ex.folder
    shutil.copytree(ex.solution_dir(PROJECT_ROOT), work)
    monkeypatch.setenv("LAB_HOME", str(lab_settings.home))
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(
        str(work / ex.notebook),
        str(out),
        kernel_name="workbook",
        cwd=str(work),
        progress_bar=False,
        execution_timeout=int(ex.cell_timeout),
    )
    executed = nbformat.read(out, as_version=4)
    text = "".join(
        o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs
    )
    public = len(ex.public_checks())
    assert f"public checks: {public}/{public} passed" in text


def _autograde(
    tmp: Path, number: str, submissions: dict[str, Path], home: Path
) -> dict[str, dict[str, float]]:
    ex = exercise(number)
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT_ROOT / "nbgrader_config.py", tmp / "nbgrader_config.py")
    shutil.copytree(ex.solution_dir(PROJECT_ROOT), tmp / "solutions" / ex.folder)
    db = f"sqlite:///{tmp / 'gradebook.db'}"
    env = {**venv_env(), "LAB_HOME": str(home)}
    nbgrader = [sys.executable, "-m", "nbgrader"]
    subprocess.run(
        [*nbgrader, "generate_assignment", ex.folder, f"--db={db}"],
        cwd=tmp,
        env=env,
        check=True,
        capture_output=True,
    )
    for student, path in submissions.items():
        dest = tmp / "submitted" / student / ex.folder
        dest.mkdir(parents=True)
        shutil.copy(path, dest / ex.notebook)
        subprocess.run(
            [*nbgrader, "db", "student", "add", student, f"--db={db}"],
            cwd=tmp,
            env=env,
            check=True,
            capture_output=True,
        )
    subprocess.run(
        [*nbgrader, "autograde", ex.folder, f"--db={db}"],
        cwd=tmp,
        env=env,
        check=True,
        capture_output=True,
    )
    from nbgrader.api import Gradebook

    scores: dict[str, dict[str, float]] = {}
    with Gradebook(db) as gb:
        for student in submissions:
            nb = gb.find_submission_notebook(ex.notebook.removesuffix(".ipynb"), ex.folder, student)
            scores[student] = {g.name.removeprefix("check_"): float(g.score) for g in nb.grades}
    for student in submissions:
        graded = nbformat.read(tmp / "autograded" / student / ex.folder / ex.notebook, as_version=4)
        for cell in graded.cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if meta.get("grade") and not meta.get("solution"):
                stderr = [o for o in cell.get("outputs", []) if o.get("name") == "stderr"]
                assert stderr == [], f"{student} {meta['grade_id']}: stderr {stderr}"
    return scores


# nbgrader's autograde runs each submission again in its own kernel (three more notebook runs per
# exercise); the agreement it proves is the spine's (same registry, same cell metadata, same checks),
# so it is run on exercise 02, and test_registry.py pins every exercise's cell metadata to the
# registry.
@pytest.mark.parametrize("number", [n for n in NUMBERS if n == "02"])
def test_nbgrader_autograde_gives_the_same_points_as_make_grade(
    number: str, lab_settings: Settings, grade_variant: Callable[..., Report], tmp_path: Path
) -> None:
    """nbgrader autograde of solution, starter and a partly right notebook matches our grade per check."""
    ex = exercise(number)
    partly = ex.mutants[-1].name
    scratch = tmp_path / "mutant"
    from tests.graders.conftest import variant_path

    submissions = {
        "solution": variant_path(number, "solution", scratch),
        "starter": variant_path(number, "starter", scratch),
        "partly": variant_path(number, partly, scratch),
    }
    ours = {
        s: grade_variant(number, s if s != "partly" else partly).points_by_check()
        for s in submissions
    }
    theirs = _autograde(tmp_path / "course", number, submissions, lab_settings.home)
    for student in submissions:
        assert theirs[student] == ours[student], (
            student,
            json.dumps(theirs[student]),
            json.dumps(ours[student]),
        )
    assert os.path.exists(tmp_path / "course" / "gradebook.db")
