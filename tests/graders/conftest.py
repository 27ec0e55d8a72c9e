"""Fixtures of the grader validity suite: one grade per submission variant, shared by the tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import lab_stack
from graders import Report, exercise, grade
from graders.mutants import write_mutant
from lab_stack.settings import PROJECT_ROOT, Settings


@pytest.fixture(scope="session")
def grade_variant(
    stack: lab_stack.Stack, lab_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., Report]:
    """Grade a variant of an exercise once per session: ``solution``, ``starter`` or a mutant name."""
    cache: dict[tuple[str, str, tuple[str, ...] | None], Report] = {}
    scratch = tmp_path_factory.mktemp("variants")

    def run(number: str, variant: str, *, only: tuple[str, ...] | None = None) -> Report:
        key = (number, variant, only)
        full = (number, variant, None)
        if full in cache:
            return cache[full]
        if key not in cache:
            cache[key] = grade(
                number,
                notebook=variant_path(number, variant, scratch),
                settings=lab_settings,
                only=only,
            )
        return cache[key]

    return run


def variant_path(number: str, variant: str, scratch: Path) -> Path:
    """The notebook of ``variant`` (writing a mutant's copy under ``scratch`` when needed)."""
    ex = exercise(number)
    if variant == "solution":
        return ex.solution_dir(PROJECT_ROOT) / ex.notebook
    if variant == "starter":
        return ex.release_dir(PROJECT_ROOT) / ex.notebook
    mutant = next(m for m in ex.mutants if m.name == variant)
    path = scratch / mutant.name / ex.folder / ex.notebook
    return path if path.exists() else write_mutant(ex, mutant, scratch)
