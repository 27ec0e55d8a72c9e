"""Graders of the ML Observability Workbook: one pytest module per exercise and the grading core.

Example:
    >>> import graders
    >>> graders.exercise("02").folder
    'ex02_metrics'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from graders.errors import CheckFailed, GradingError, SubmissionError, UnknownExercise

if TYPE_CHECKING:
    from graders.notebook import check, nbcheck, record_answers
    from graders.registry import (
        Check,
        Exercise,
        Mutant,
        exercise,
        exercise_numbers,
        grader_keys,
    )
    from graders.report import CheckResult, Report, grade

# Imported on first use: a notebook's `import graders` (to record answers) should not pay for
# nbformat and jsonschema (~2.5 s), which only grading needs.
_LAZY = {
    "check": "graders.notebook",
    "nbcheck": "graders.notebook",
    "record_answers": "graders.notebook",
    "Check": "graders.registry",
    "Exercise": "graders.registry",
    "Mutant": "graders.registry",
    "exercise": "graders.registry",
    "exercise_numbers": "graders.registry",
    "grader_keys": "graders.registry",
    "CheckResult": "graders.report",
    "Report": "graders.report",
    "grade": "graders.report",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'graders' has no attribute {name!r}")


__all__ = [
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
