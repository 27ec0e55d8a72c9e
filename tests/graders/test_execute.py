"""A submission that misbehaves ends as a failed run with its reason, within the timeout."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from graders.execute import run_notebook
from lab_stack.settings import Settings

pytestmark = pytest.mark.slow


def _notebook(folder: Path, *sources: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "nb.ipynb"
    nb = new_notebook(
        cells=[new_code_cell(s) for s in sources],
        metadata={
            "kernelspec": {"name": "workbook", "display_name": "workbook", "language": "python"}
        },
    )
    nbformat.write(nb, path)
    return path


@pytest.mark.parametrize(
    ("sources", "reason", "stopped"),
    [
        (("x = 1", "raise ValueError('boom')", "y = 2"), "cell 2 raised ValueError: boom", False),
        (("import sys; sys.exit(3)",), "cell 1 raised SystemExit", False),
        (("import time; time.sleep(60)",), "cell 1 did not finish in time", True),
        (("import os; os._exit(1)",), "kernel died while running cell 1", True),
        (("while True: print('x' * 10000)",), "printed more than", True),
    ],
    ids=["raises", "sys-exit", "hangs", "kills-kernel", "floods"],
)
def test_misbehaving_notebook_ends_with_its_reason(
    sources: tuple[str, ...], reason: str, stopped: bool, tmp_path: Path, lab_settings: Settings
) -> None:
    """Raising, sys.exit, hanging, killing the kernel or flooding output fail the run with the reason."""
    path = _notebook(tmp_path / "ex", *sources)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    started = time.monotonic()
    with run_notebook(
        path, settings=lab_settings, cell_timeout=4, total_timeout=8, max_output_bytes=200_000
    ) as run:
        assert not run.ok
        assert run.reason is not None and reason in run.reason
        assert run.stopped is stopped
    # It ends by itself: the kernel's start-up (60 s limit) plus the notebook's 8 s, not a hang.
    assert time.monotonic() - started < 90
    assert (
        hashlib.sha256(path.read_bytes()).hexdigest() == digest
    )  # the student's file is never written


def test_kernel_and_its_children_stay_alive_until_the_context_ends(
    tmp_path: Path, lab_settings: Settings
) -> None:
    """The kernel (and a process it started) run while the checks do, and are gone afterwards."""
    import psutil

    path = _notebook(
        tmp_path / "ex",
        "import subprocess, sys\nchild = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])",
    )
    with run_notebook(path, settings=lab_settings, cell_timeout=20, total_timeout=30) as run:
        assert run.ok, run.reason
        kernel = psutil.Process(run.kernel_pid)
        children = kernel.children(recursive=True)
        assert kernel.is_running() and children
    _gone, alive = psutil.wait_procs([kernel, *children], timeout=5)
    assert alive == []
