"""Run an exercise's checks against live state and report: a Rich table, JSON and HTML.

Example:
    >>> report = grade("02")                      # doctest: +SKIP
    >>> report.score, report.max_score, report.passed   # doctest: +SKIP
    (24.0, 24.0, True)
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from graders.context import GradingContext
from graders.errors import CheckFailed
from graders.execute import CellEvent, run_notebook
from graders.registry import Check, Exercise, exercise
from lab_stack import Stack
from lab_stack.errors import LabError, NotRunning
from lab_stack.settings import PROJECT_ROOT, Settings, get_settings

__all__ = ["CheckResult", "Report", "ensure_stack", "grade", "run_checks"]


@dataclass
class CheckResult:
    """One check's verdict."""

    name: str
    title: str
    points: float
    max_points: float
    hidden: bool
    passed: bool
    message: str = ""
    seconds: float = 0.0


@dataclass
class Report:
    """A whole grade: how the notebook ran, then every check's verdict."""

    exercise: str
    notebook: str
    results: list[CheckResult] = field(default_factory=list)
    notebook_ok: bool = True
    reason: str | None = None
    notebook_seconds: float = 0.0
    checks_seconds: float = 0.0

    @property
    def score(self) -> float:
        """Points earned."""
        return sum(r.points for r in self.results)

    @property
    def max_score(self) -> float:
        """Points available."""
        return sum(r.max_points for r in self.results)

    @property
    def passed(self) -> bool:
        """True when the notebook ran to its end and every check passed."""
        return self.notebook_ok and all(r.passed for r in self.results)

    def points_by_check(self) -> dict[str, float]:
        """``{check name: points earned}``."""
        return {r.name: r.points for r in self.results}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the ``--json`` report)."""
        return {
            "exercise": self.exercise,
            "notebook": self.notebook,
            "notebook_ok": self.notebook_ok,
            "reason": self.reason,
            "score": self.score,
            "max_score": self.max_score,
            "passed": self.passed,
            "notebook_seconds": round(self.notebook_seconds, 3),
            "checks_seconds": round(self.checks_seconds, 3),
            "checks": [asdict(r) for r in self.results],
        }

    def to_json(self) -> str:
        """The report as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)

    def table(self, *, title: str | None = None) -> Table:
        """A Rich table: one row per check with points and, for failures, the hint."""
        table = Table(
            title=title or f"Exercise {self.exercise}: {self.score:g}/{self.max_score:g} points"
        )
        table.add_column("", width=2)
        table.add_column("check")
        table.add_column("points", justify="right")
        table.add_column("what to do", overflow="fold")
        for r in self.results:
            mark = "[green]✔[/]" if r.passed else "[red]✘[/]"
            name = r.title + (" [dim](hidden)[/]" if r.hidden else "")
            table.add_row(
                mark, name, f"{r.points:g}/{r.max_points:g}", "" if r.passed else r.message
            )
        if self.reason:
            table.caption = f"[red]notebook: {self.reason}[/]"
        return table

    def to_html(self) -> str:
        """A small standalone HTML page of the report."""
        rows = "\n".join(
            f"<tr class={'pass' if r.passed else 'fail'}><td>{'✔' if r.passed else '✘'}</td>"
            f"<td>{html.escape(r.title)}{' (hidden)' if r.hidden else ''}</td>"
            f"<td>{r.points:g}/{r.max_points:g}</td><td>{html.escape(r.message)}</td></tr>"
            for r in self.results
        )
        reason = f"<p class=fail>Notebook: {html.escape(self.reason)}</p>" if self.reason else ""
        return (
            "<!doctype html><meta charset=utf-8><title>Exercise "
            f"{self.exercise}</title><style>.pass{{color:#060}}.fail{{color:#a00}}"
            "td{padding:2px 8px;vertical-align:top}</style>"
            f"<h1>Exercise {self.exercise}: {self.score:g}/{self.max_score:g} points</h1>{reason}"
            f"<table><tr><th></th><th>check</th><th>points</th><th>what to do</th></tr>{rows}</table>"
        )


def run_checks(
    ex: Exercise,
    ctx: GradingContext,
    *,
    checks: Iterable[Check] | None = None,
    state: Any = None,
) -> list[CheckResult]:
    """Run ``checks`` (default: all) against the live state behind ``ctx``; never raises."""
    chosen = list(ex.checks.values()) if checks is None else list(checks)
    if state is None:
        if ex.state is None:
            raise ValueError(f"exercise {ex.number} declares no state factory")
        state = ex.state(ctx)
    results = []
    for check in chosen:
        started = time.monotonic()
        try:
            check.fn(state)
        except CheckFailed as exc:
            ok, message = False, str(exc)
        except AssertionError as exc:
            ok, message = False, str(exc) or "an assertion failed"
        except LabError as exc:
            ok, message = False, f"a backend query failed: {exc}"
        except Exception as exc:
            ok, message = (
                False,
                f"the grader could not finish this check: {type(exc).__name__}: {exc}",
            )
        else:
            ok, message = True, ""
        results.append(
            CheckResult(
                check.name,
                check.title,
                check.points if ok else 0.0,
                check.points,
                check.hidden,
                ok,
                message,
                time.monotonic() - started,
            )
        )
    return results


def ensure_stack(settings: Settings) -> Stack:
    """The running stack under ``settings``; started (on its usual ports) when it is down."""
    import lab_stack

    try:
        stack = lab_stack.connect(settings=settings)
        if all(s.state == "ready" for s in stack.status()):
            return stack
    except NotRunning:
        pass
    return lab_stack.up(settings=settings)


def grade(
    key: str,
    *,
    notebook: Path | None = None,
    settings: Settings | None = None,
    include_hidden: bool = True,
    only: Iterable[str] | None = None,
    on_cell: CellEvent | None = None,
) -> Report:
    """Run a copy of the exercise's notebook in a fresh kernel, then its checks; return the report.

    Args:
        key: exercise number (``02``) or folder (``ex02_metrics``).
        notebook: the submission (default ``notebooks/<folder>/<notebook>``).
        settings: the lab settings (default: the environment's); the stack is started if down.
        include_hidden: also run hidden checks.
        only: names of the checks to run (default: all).
        on_cell: progress callback while the notebook runs.
    """
    ex = exercise(key)
    settings = settings or get_settings()
    path = Path(notebook) if notebook else ex.release_dir(PROJECT_ROOT) / ex.notebook
    if not path.is_file():
        from graders.errors import GradingError

        raise GradingError(f"notebook {path} does not exist. Hint: pass --notebook PATH.")
    stack = ensure_stack(settings)
    wanted = [c for c in ex.checks.values() if (include_hidden or not c.hidden)]
    if only is not None:
        names = set(only)
        wanted = [c for c in wanted if c.name in names]
    report = Report(ex.number, str(path))
    with run_notebook(
        path,
        settings=settings,
        cell_timeout=ex.cell_timeout,
        total_timeout=ex.total_timeout,
        on_cell=on_cell,
    ) as run:
        report.notebook_ok, report.reason, report.notebook_seconds = run.ok, run.reason, run.seconds
        started = time.monotonic()
        if run.stopped:
            report.results = [
                CheckResult(
                    c.name, c.title, 0.0, c.points, c.hidden, False, f"not graded: {run.reason}"
                )
                for c in wanted
            ]
        else:
            ctx = GradingContext(stack, run.workdir, run.kernel_pid, run.finished_at)
            report.results = run_checks(ex, ctx, checks=wanted)
        report.checks_seconds = time.monotonic() - started
    return report
