"""The grading error family, rooted in :class:`GradingError`.

::

    GradingError
    ├── UnknownExercise      no grader module for the exercise asked for
    ├── SubmissionError      the notebook could not be run to the end (raised, hung, killed, ...)
    └── CheckFailed          one check's verdict: expected, found, next step (also AssertionError)
"""

from __future__ import annotations

__all__ = ["CheckFailed", "GradingError", "SubmissionError", "UnknownExercise"]


class GradingError(Exception):
    """Root of every error the graders raise."""


class UnknownExercise(GradingError):
    """No grader module exists for the exercise number or folder asked for."""


class SubmissionError(GradingError):
    """The submitted notebook did not run to its end; ``reason`` says why in one line."""

    def __init__(self, message: str, *, reason: str, cell: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.cell = cell


class CheckFailed(GradingError, AssertionError):
    """A check's negative verdict, worded for the student: what was expected, found, and next."""

    def __init__(self, *, expected: str, found: str, hint: str) -> None:
        super().__init__(f"Expected {expected}; found {found}. Hint: {hint}")
        self.expected = expected
        self.found = found
        self.hint = hint
