"""Exercise 01's files: the notebook writes what the solution folder ships, and the starter has none of it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from graders import ex01_checks as ex
from graders import exercise
from lab_stack import dashboards
from lab_stack.settings import PROJECT_ROOT

SOLUTION = PROJECT_ROOT / "solutions" / "ex01_stack"
MARKER = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$")


def _cells(folder: Path) -> dict[str, str]:
    nb = nbformat.read(folder / "ex01_stack.ipynb", as_version=4)
    return {path: cell.source.partition("\n")[2] for path, cell in ex.writefile_cells(nb).items()}


@pytest.mark.parametrize("name", ex.STUDENT_FILES)
def test_notebook_writes_the_solution_files(name: str) -> None:
    """Each %%writefile cell of the solution, markers aside, is the file solutions/ex01_stack ships."""
    body = _cells(SOLUTION)[name]
    shipped = (SOLUTION / name).read_text()
    if name.endswith(".json"):
        assert json.loads(body) == json.loads(shipped)
    else:
        kept = [line for line in body.splitlines() if not MARKER.match(line)]
        assert "\n".join(kept).rstrip() == shipped.rstrip()


def test_starter_hook_blanks_every_query_and_removes_the_solved_files(tmp_path: Path) -> None:
    """make_starter_files leaves no solved file and no PromQL; the dashboard then fails validation."""
    folder = tmp_path / "ex01_stack"
    shutil.copytree(SOLUTION, folder)
    changed = ex.make_starter_files(folder)
    assert folder / "ex01_stack.ipynb" in changed
    for name in (*ex.STUDENT_FILES, "CHECKS.md"):
        assert not (folder / name).exists(), name
    assert (folder / "rules" / "stack.yml").is_file()  # given, not the student's
    board = dashboards.load(_cells(folder)[ex.DASHBOARD_FILE])
    assert [t.expr for p in board.panels for t in p.targets] == [""] * 6
    assert any("is empty" in str(p) for p in dashboards.validate(board))
    assert ex.make_starter_files(folder) == []  # idempotent


def test_exercise_registers_the_starter_hook() -> None:
    """The registry hands the release step ex01's hook (and ex06's)."""
    assert exercise("01").make_starter is ex.make_starter_files
    assert exercise("06").make_starter is not None
