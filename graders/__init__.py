"""Graders of the ML Observability Workbook: one pytest module per exercise and the grading core.

Example:
    >>> import graders
    >>> graders.exercise("02").folder
    'ex02_metrics'
"""

from __future__ import annotations

from graders.errors import CheckFailed, GradingError, SubmissionError, UnknownExercise
from graders.notebook import check, nbcheck, record_answers
from graders.registry import Check, Exercise, Mutant, exercise, exercise_numbers
from graders.report import CheckResult, Report, grade

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
    "nbcheck",
    "record_answers",
]
