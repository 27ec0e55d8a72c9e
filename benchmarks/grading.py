"""Wall time of grading exercise 02 with the stack already up: `make grade EX=02` (notebook
execution and checks separately) and one `nbgrader autograde` of the same submission.

Run: ``.venv/bin/python benchmarks/grading.py`` (starts a stack in a temporary home, stops it).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lab_stack
from graders import exercise, grade
from graders.release import venv_env
from lab_stack.settings import PROJECT_ROOT, Settings


def main() -> None:
    ex = exercise("02")
    solution = ex.solution_dir(PROJECT_ROOT) / ex.notebook
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        settings = Settings.from_env().with_(home=Path(tmp) / "lab", backend="native")
        lab_stack.up(settings=settings, free_ports=True)
        try:
            t0 = time.monotonic()
            report = grade("02", notebook=solution, settings=settings)
            total = time.monotonic() - t0
            course = Path(tmp) / "course"
            course.mkdir()
            shutil.copy(PROJECT_ROOT / "nbgrader_config.py", course)
            shutil.copytree(ex.solution_dir(PROJECT_ROOT), course / "solutions" / ex.folder)
            sub = course / "submitted" / "alice" / ex.folder
            sub.mkdir(parents=True)
            shutil.copy(solution, sub / ex.notebook)
            env = {**venv_env(), "LAB_HOME": str(settings.home)}
            db = f"--db=sqlite:///{course / 'gradebook.db'}"
            nbg = [sys.executable, "-m", "nbgrader"]
            subprocess.run(
                [*nbg, "generate_assignment", ex.folder, db],
                cwd=course,
                env=env,
                check=True,
                capture_output=True,
            )
            t1 = time.monotonic()
            subprocess.run(
                [*nbg, "autograde", ex.folder, db, "--create"],
                cwd=course,
                env=env,
                check=True,
                capture_output=True,
            )
            autograde = time.monotonic() - t1
        finally:
            lab_stack.down(settings=settings)
    print(f"{'measure':44} {'seconds':>8}")
    print(f"{'grade ex02 (solution): notebook execution':44} {report.notebook_seconds:8.1f}")
    print(f"{'grade ex02 (solution): checks':44} {report.checks_seconds:8.1f}")
    print(f"{'grade ex02 (solution): total (target <= 30)':44} {total:8.1f}")
    print(f"{'nbgrader autograde, one submission':44} {autograde:8.1f}")
    print(f"score {report.score:g}/{report.max_score:g}")


if __name__ == "__main__":
    main()
