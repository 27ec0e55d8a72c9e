"""Gradescope's autograder format: ``results.json`` from a grade, and the autograder itself.

The same grader runs three ways: ``make grade`` for a student, ``python -m graders class`` for a
class, and uploaded to Gradescope as an autograder (``python -m graders.gradescope bundle 02``
builds the zip; its ``run_autograder`` calls ``python -m graders.gradescope run``, which grades
``/autograder/submission`` and writes ``/autograder/results/results.json``). Hidden checks are
``after_published`` and their output is only their title and points (:mod:`graders.feedback`).

Example:
    >>> from graders.report import CheckResult, Report
    >>> report = Report("02", "metrics.ipynb", [CheckResult("a", "A", 2.0, 2.0, False, True)])
    >>> results = results_json(report, execution_time=3.2)
    >>> results["score"], results["tests"][0]["visibility"]
    (2.0, 'visible')
    >>> validate(results)
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from graders.errors import GradingError
from graders.feedback import hidden_summary, student_view
from graders.registry import Exercise
from graders.report import Report

__all__ = [
    "SCHEMA_PATH",
    "find_notebook",
    "results_json",
    "validate",
    "write_results",
]

#: JSON schema of the results.json this module writes (the subset of Gradescope's format used).
SCHEMA_PATH = Path(__file__).with_name("results.schema.json")


def results_json(
    report: Report, *, execution_time: float, status: str = "graded"
) -> dict[str, Any]:
    """Gradescope's ``results.json`` for ``report`` (hidden checks: title and points only)."""
    tests = []
    for number, view in enumerate(student_view(report), start=1):
        if view.hidden:
            output, visibility = hidden_summary(view), "after_published"
        else:
            output = "Passed." if view.passed else (view.message or "Failed.")
            visibility = "visible"
        tests.append(
            {
                "name": view.title,
                "number": str(number),
                "score": view.points,
                "max_score": view.max_points,
                "status": "passed" if view.passed else "failed",
                "output": output,
                "visibility": visibility,
            }
        )
    lines = [f"Exercise {report.exercise}: {report.score:g}/{report.max_score:g} points."]
    if report.reason:
        lines.append(f"Notebook: {report.reason}")
    if status != "graded":
        lines.append("The notebook could not be graded to its end; every check scored 0.")
    return {
        "score": report.score,
        "max_score": report.max_score,
        "execution_time": round(max(execution_time, 0.0), 3),
        "output": "\n".join(lines),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
    }


@cache
def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return schema


def validate(results: dict[str, Any]) -> None:
    """Raise :class:`jsonschema.ValidationError` unless ``results`` fits :data:`SCHEMA_PATH`."""
    import jsonschema

    jsonschema.validate(results, _schema())


def write_results(path: Path, results: dict[str, Any]) -> Path:
    """Validate ``results`` and write them to ``path`` (folders created)."""
    validate(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    return path


def find_notebook(ex: Exercise, folder: Path) -> Path:
    """The submitted notebook under ``folder``: ``ex.notebook`` anywhere in it, else the only one.

    Raises:
        GradingError: no such notebook, or several candidates and none named ``ex.notebook``.
    """
    named = sorted(p for p in folder.rglob(ex.notebook) if ".ipynb_checkpoints" not in p.parts)
    if named:
        return named[0]
    found = sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if len(found) == 1:
        return found[0]
    raise GradingError(
        f"no notebook {ex.notebook} in {folder}"
        + (f" (found {', '.join(p.name for p in found)})" if found else "")
        + f". Hint: submit {ex.folder}/{ex.notebook} as released, without renaming it."
    )
