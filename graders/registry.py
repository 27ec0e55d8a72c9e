"""The check registry: the one place that knows each exercise's checks, points and mutants.

A grader module ``graders/test_exNN_<topic>.py`` declares ``EXERCISE = Exercise(...)`` and
decorates each check (a pytest test taking the exercise's ``state`` fixture) with
``@EXERCISE.check(points=..., title=..., hidden=...)``. Everything else — ``make grade``, the JSON
report, the notebook's check cell, nbgrader's cell metadata — reads points from here.

Example:
    >>> ex = Exercise(number="99", folder="ex99_demo", notebook="demo.ipynb", title="Demo")
    >>> @ex.check(points=2, title="Two is two")
    ... def test_two(state: object) -> None:
    ...     assert 1 + 1 == 2
    >>> ex.checks["two"].points, ex.checks["two"].grade_id
    (2.0, 'check_two')
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from graders.errors import UnknownExercise

__all__ = ["Check", "Exercise", "Mutant", "exercise", "exercise_numbers", "grader_keys"]

_F = TypeVar("_F", bound=Callable[..., None])
_PACKAGE_DIR = Path(__file__).resolve().parent
_MODULE_RE = re.compile(r"^test_(?:ex(\d\d)|(kc|capstone))_[a-z0-9_]+\.py$")
#: The module's assessments beside the numbered exercises: key -> nbgrader folder.
ASSESSMENTS = {"kc": "knowledge_check", "capstone": "capstone"}


@dataclass(frozen=True)
class Check:
    """One graded check: a test function with points, a title and a public/hidden flag."""

    exercise: str
    name: str
    title: str
    points: float
    hidden: bool
    fn: Callable[[Any], None] = field(repr=False, compare=False)

    @property
    def grade_id(self) -> str:
        """The nbgrader ``grade_id`` of the autograder cell that runs this check."""
        return f"check_{self.name}"

    @property
    def test_name(self) -> str:
        """The pytest test function's name."""
        return self.fn.__name__


@dataclass(frozen=True)
class Mutant:
    """A plausible wrong answer: text replacements applied to the solution notebook's code cells.

    Attributes:
        name: short id (``user_id_label``).
        description: what the mistake is, in one line.
        aims: the checks that must fail on it.
        replace: ``(old, new)`` pairs; each ``old`` must occur exactly once in the code cells.
    """

    name: str
    description: str
    aims: tuple[str, ...]
    replace: tuple[tuple[str, str], ...]


StateFactory = Callable[[Any], Any]


@dataclass
class Exercise:
    """An exercise's grading metadata, its checks (in declaration order) and its mutants.

    Attributes:
        number: two digits, ``"02"``, or an assessment's key (``"kc"``, ``"capstone"``).
        folder: the nbgrader assignment folder (``ex02_metrics``) under solutions/ and notebooks/.
        notebook: the notebook's file name inside the folder.
        title: the exercise's title.
        state: builds the lazily computed grading state from a :class:`graders.context.GradingContext`.
        cell_timeout / total_timeout: seconds one cell / the whole notebook may run when graded.
        make_starter: turns the release folder (``notebooks/<folder>``, written by ``nbgrader
            generate_assignment``) into the starter: blanks the solved files shipped next to the
            notebook, which nbgrader does not touch. Called by :mod:`graders.release`; its return
            value is ignored.
        shares_stack: True when two submissions may be graded at once against one stack: the
            checks only look at what the submission's own kernel registered (its targets, its
            log files, its trace ids) and the notebook changes no global configuration (rules,
            Alertmanager, prometheus.yml). Class grading gives the others a stack per slot.
    """

    number: str
    folder: str
    notebook: str
    title: str
    state: StateFactory | None = None
    cell_timeout: float = 120.0
    total_timeout: float = 300.0
    make_starter: Callable[[Path], object] | None = None
    shares_stack: bool = False
    checks: dict[str, Check] = field(default_factory=dict)
    mutants: list[Mutant] = field(default_factory=list)

    def check(self, *, points: float, title: str, hidden: bool = False) -> Callable[[_F], _F]:
        """Register the decorated ``test_<name>`` function as a check; it stays a pytest test."""

        def register(fn: _F) -> _F:
            if not fn.__name__.startswith("test_"):
                raise ValueError(
                    f"check function {fn.__name__} must be named test_<name> for pytest"
                )
            name = fn.__name__.removeprefix("test_")
            if name in self.checks:
                raise ValueError(f"exercise {self.number} already has a check named {name!r}")
            self.checks[name] = Check(self.number, name, title, float(points), hidden, fn)
            return fn

        return register

    def mutant(
        self, name: str, *, description: str, aims: Sequence[str], replace: Mapping[str, str]
    ) -> Mutant:
        """Declare a mutant of the solution (see :class:`Mutant`)."""
        unknown = [a for a in aims if a not in self.checks]
        if unknown:
            raise ValueError(
                f"mutant {name} aims at unknown checks {unknown}; declare checks first"
            )
        found = Mutant(name, description, tuple(aims), tuple(replace.items()))
        self.mutants.append(found)
        return found

    @property
    def slug(self) -> str:
        """``ex02`` for a numbered exercise, else the key (``kc``, ``capstone``): file names."""
        return f"ex{self.number}" if self.number.isdigit() else self.number

    @property
    def total_points(self) -> float:
        """Points of every check, hidden ones included."""
        return sum(c.points for c in self.checks.values())

    def public_checks(self) -> list[Check]:
        """The checks a student may run before submitting."""
        return [c for c in self.checks.values() if not c.hidden]

    def solution_dir(self, root: Path) -> Path:
        """``<root>/solutions/<folder>``."""
        return root / "solutions" / self.folder

    def release_dir(self, root: Path) -> Path:
        """``<root>/notebooks/<folder>``."""
        return root / "notebooks" / self.folder


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(_PACKAGE_DIR.glob("test_*.py")):
        match = _MODULE_RE.match(path.name)
        if match:
            found.setdefault(match.group(1) or match.group(2), path)
    return found


def _module_for(key: str) -> str:
    path = _modules().get(key)
    if path is None:
        raise UnknownExercise(
            f"no grader module graders/test_{'ex' if key.isdigit() else ''}{key}_*.py for "
            f"{key!r}; known: {', '.join(grader_keys()) or 'none'}. "
            "Hint: pass the two-digit number, e.g. 02, or capstone / kc."
        )
    return f"graders.{path.stem}"


def exercise_numbers() -> list[str]:
    """The two-digit numbers of every exercise that has a grader module."""
    return sorted(k for k in _modules() if k.isdigit())


def grader_keys() -> list[str]:
    """Every graded assignment: the exercises' numbers, then the assessments (capstone, kc)."""
    return exercise_numbers() + sorted(k for k in _modules() if not k.isdigit())


def _key_of(text: str) -> str | None:
    text = text.strip()
    for key, folder in ASSESSMENTS.items():
        if text in (key, folder) or text.replace("-", "_") == folder:
            return key
    match = re.match(r"^(?:ex)?(\d{1,2})(?:_.*)?$", text)
    return match.group(1).zfill(2) if match else None


def exercise(key: str) -> Exercise:
    """The :class:`Exercise` for ``"02"``, ``"2"``, ``"ex02_metrics"``, ``"capstone"``,
    ``"kc"`` or ``"knowledge_check"`` (imports its grader module)."""
    found_key = _key_of(key)
    if found_key is None:
        raise UnknownExercise(
            f"{key!r} names no exercise. Hint: pass its number (02) or folder (ex02_metrics), "
            "or capstone / kc."
        )
    module = importlib.import_module(_module_for(found_key))
    found = getattr(module, "EXERCISE", None)
    if not isinstance(found, Exercise):
        raise UnknownExercise(f"{module.__name__} defines no EXERCISE = Exercise(...).")
    return found
