"""Checks from inside a notebook: the public check cell, nbgrader's autograder cells, the answers.

* :func:`check` — run the public checks of an exercise against the live state and show the same
  table as ``make grade`` (like otter-grader's ``grader.check``); never raises.
* :func:`nbcheck` — run one check for an nbgrader autograder cell; raises on failure (0 points).
* :func:`record_answers` — write the notebook's PromQL (or LogQL, TraceQL) answers for the grader.

The checks still ask the backends, never the kernel's variables: the kernel only hosts the
services under test, found through Prometheus's targets.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from graders.context import GradingContext
from graders.registry import exercise

__all__ = ["check", "nbcheck", "record_answers"]

_STATES: dict[str, Any] = {}


def _fresh_state(key: str) -> Any:
    import lab_stack

    ex = exercise(key)
    if ex.state is None:
        raise ValueError(f"exercise {ex.number} declares no state factory")
    ctx = GradingContext(lab_stack.connect(), Path.cwd(), os.getpid(), time.time())
    _STATES[ex.number] = state = ex.state(ctx)
    return state


def check(key: str) -> None:
    """Run the exercise's public checks now and display the table of points and hints."""
    from rich.console import Console

    from graders.report import Report, run_checks

    ex = exercise(key)
    state = _fresh_state(ex.number)
    report = Report(ex.number, str(Path.cwd() / ex.notebook))
    report.results = run_checks(ex, state.ctx, checks=ex.public_checks(), state=state)
    Console().print(
        report.table(
            title=f"Exercise {ex.number} — public checks: "
            f"{report.score:g}/{report.max_score:g} points"
        )
    )
    passed = sum(r.passed for r in report.results)
    hidden = len(ex.checks) - len(ex.public_checks())
    print(  # noqa: T201 - the notebook's check cell prints its summary line on purpose
        f"public checks: {passed}/{len(report.results)} passed, {report.score:g}/{report.max_score:g} "
        f"points ({hidden} hidden checks run when you submit)"
    )


def nbcheck(key: str, name: str) -> None:
    """Run check ``name`` for an autograder cell: silent on success, raises on failure."""
    ex = exercise(key)
    state = _STATES.get(ex.number) or _fresh_state(ex.number)
    ex.checks[name].fn(state)
    print(f"✔ {ex.checks[name].title}")  # noqa: T201 - autograder cell output


def record_answers(key: str, answers: Mapping[str, str]) -> Path:
    """Write ``answers`` to ``answers_exNN.json`` next to the notebook; return the path."""
    ex = exercise(key)
    path = Path.cwd() / f"answers_{ex.slug}.json"
    path.write_text(json.dumps({str(k): str(v) for k, v in answers.items()}, indent=2))
    return path
