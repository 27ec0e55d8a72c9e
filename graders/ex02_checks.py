"""Exercise 02's dashboard task: grade the student's "ML service" dashboard, and blank its starter.

The notebook writes ``dashboards/ml_service.json`` with a ``%%writefile`` cell. The grader loads
that file from the graded copy, validates it as Grafana 10.2 would read it, restricts every query's
``ml_`` selectors to the graded kernel's instances (:func:`graders.context.scope_query`, as the
PromQL answers are) and runs each panel over the grader's own traffic window: every panel must show
data. The release gets the cell with every query emptied and no solved copy of the file.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat

from graders.context import scope_query
from graders.ex01_checks import blank_dashboard_queries, writefile_cells
from lab_stack import dashboards
from lab_stack.errors import LabError

if TYPE_CHECKING:
    from lab_stack import Stack

__all__ = ["DASHBOARD_FILE", "dashboard_problems", "make_starter_files", "scoped_dashboard"]

#: The dashboard the notebook's Task 6 cell writes, relative to the notebook's folder.
DASHBOARD_FILE = "dashboards/ml_service.json"


def _panels(items: Sequence[Any]) -> Iterator[dict[str, Any]]:
    for item in items:
        if isinstance(item, dict):
            yield item
            yield from _panels(item.get("panels") or [])


def scoped_dashboard(document: dict[str, Any], instances: Sequence[str]) -> dict[str, Any]:
    """A copy of the dashboard document whose PromQL ``ml_`` selectors only match ``instances``."""
    scoped = copy.deepcopy(document)
    for panel in _panels(scoped.get("panels") or []):
        for target in panel.get("targets") or []:
            if isinstance(target, dict) and isinstance(target.get("expr"), str):
                target["expr"] = scope_query(target["expr"], instances)
    return scoped


def dashboard_problems(
    path: Path, *, stack: Stack, instances: Sequence[str], start: float, end: float
) -> list[str]:
    """What keeps the dashboard at ``path`` from showing data in every panel over ``start..end``.

    Empty when the file loads, validates against the lab's datasources, and every query panel
    (its queries scoped to ``instances``) returns data. Each problem names the panel and ends with
    a ``Hint:``.
    """
    try:
        board = dashboards.load(path)
    except LabError as exc:
        return [str(exc)]
    problems = [str(p) for p in dashboards.validate(board)]
    if problems:
        return problems
    run = dashboards.run(
        scoped_dashboard(dict(board.raw), instances), stack=stack, start=start, end=end
    )
    if not run.panels:
        return [
            f"{path.name} has no panel with a query. Hint: keep the panels of Task 6 and fill "
            "in their expr."
        ]
    return run.problems()


def make_starter_files(folder: Path) -> list[Path]:
    """Turn the generated release folder of exercise 02 into the starter; return what changed.

    The dashboard cell's JSON cannot hold an nbgrader solution region, so its queries are emptied
    here; the solved ``dashboards/ml_service.json`` shipped next to the notebook is removed (the
    notebook writes it when it runs), and so is its folder when that leaves it empty.
    """
    changed: list[Path] = []
    solved = folder / DASHBOARD_FILE
    if solved.is_file():
        solved.unlink()
        changed.append(solved)
        if solved.parent != folder and not any(solved.parent.iterdir()):
            solved.parent.rmdir()
    for notebook in sorted(folder.glob("*.ipynb")):
        nb = nbformat.read(notebook, as_version=4)  # type: ignore[no-untyped-call]
        cell = writefile_cells(nb).get(DASHBOARD_FILE)
        if cell is None:
            continue
        header, _, body = cell.source.partition("\n")
        new = f"{header}\n{blank_dashboard_queries(body)}".rstrip("\n")
        if new != cell.source:
            cell.source = new
            nbformat.write(nb, notebook)  # type: ignore[no-untyped-call]
            changed.append(notebook)
    return changed
