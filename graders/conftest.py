"""pytest plugin for the grader modules: ``pytest graders/test_ex02_metrics.py --notebook PATH``.

A session fixture runs a copy of the notebook in a fresh kernel (kept alive for the checks), and
``state`` hands each grader module its exercise's grading state. Without ``--notebook`` the
released notebook of the module's exercise is graded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from graders.context import GradingContext
from graders.execute import Execution, run_notebook
from graders.registry import Exercise
from graders.report import ensure_stack
from lab_stack.settings import PROJECT_ROOT, get_settings


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--notebook``."""
    parser.addoption("--notebook", default=None, help="the submitted notebook to grade")


@pytest.fixture(scope="module")
def submission(request: pytest.FixtureRequest) -> Iterator[tuple[Execution, GradingContext]]:
    """The module's exercise notebook, run in a kernel that stays alive during the module's checks."""
    ex: Exercise = request.module.EXERCISE
    option = request.config.getoption("--notebook")
    path = Path(option) if option else ex.release_dir(PROJECT_ROOT) / ex.notebook
    settings = get_settings()
    stack = ensure_stack(settings)
    with run_notebook(
        path, settings=settings, cell_timeout=ex.cell_timeout, total_timeout=ex.total_timeout
    ) as run:
        yield run, GradingContext(stack, run.workdir, run.kernel_pid, run.finished_at)


@pytest.fixture(scope="module")
def state(request: pytest.FixtureRequest, submission: tuple[Execution, GradingContext]) -> Any:
    """The exercise's grading state over the running submission."""
    run, ctx = submission
    if run.stopped:
        pytest.fail(f"not graded: {run.reason}", pytrace=False)
    ex: Exercise = request.module.EXERCISE
    assert ex.state is not None
    return ex.state(ctx)
