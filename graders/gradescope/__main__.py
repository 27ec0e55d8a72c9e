"""``python -m graders.gradescope run|bundle``: the workbook's grader as a Gradescope autograder.

* ``run --assignment 02`` grades the notebook in ``/autograder/submission`` (against the lab stack,
  started inside the container when down) and writes ``/autograder/results/results.json``; both
  paths can be changed (tests, a dry run on a laptop). It exits 0 whenever results were written,
  as Gradescope reads the file, not the exit status.
* ``bundle 02`` writes the zip to upload: ``setup.sh`` and ``run_autograder`` at its root, the
  project's packages beside them, and ``assignment.txt`` naming the assignment.
"""

from __future__ import annotations

import sys
import time
import zipfile
from pathlib import Path

import click

from graders.errors import GradingError
from graders.gradescope import find_notebook, results_json, write_results
from graders.registry import exercise
from lab_stack.errors import LabError
from lab_stack.settings import PROJECT_ROOT

#: What the autograder zip carries from the project (solutions/: some graders read them).
_BUNDLED = ("pyproject.toml", "README.md", "Makefile", "nbgrader_config.py")
_BUNDLED_DIRS = ("lab_stack", "ml_service", "graders", "solutions")
_SKIPPED = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".mypy_cache", "logs"}
#: What notebooks write beside themselves while they run (git-ignored, never bundled).
_SCRATCH = ("answers_*.json", "positions.yaml", "shipper.out", "*.pyc", "*.preview.png")


@click.group()
def main() -> None:
    """The workbook's grader as a Gradescope autograder."""


@main.command()
@click.option("--assignment", "key", required=True, help="exercise number (02), capstone or kc")
@click.option(
    "--submission",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/autograder/submission"),
    show_default=True,
    help="the folder holding the student's files",
)
@click.option(
    "--results",
    "results_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("/autograder/results/results.json"),
    show_default=True,
    help="where results.json goes",
)
@click.option("--public-only", is_flag=True, help="run only the public checks")
def run(key: str, submission: Path, results_path: Path, public_only: bool) -> None:
    """Grade the submission and write Gradescope's results.json."""
    from graders.classroom import unrun_report
    from graders.report import grade

    started = time.monotonic()
    try:
        ex = exercise(key)
    except GradingError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    status = "graded"
    try:
        notebook = find_notebook(ex, submission)
        report = grade(ex.number, notebook=notebook, include_hidden=not public_only)
        if any(r.message.startswith("not graded:") for r in report.results):
            status = "failed"
    except (GradingError, LabError) as exc:
        report = unrun_report(ex, str(exc), include_hidden=not public_only)
        status = "failed"
    results = results_json(report, execution_time=time.monotonic() - started, status=status)
    write_results(results_path, results)
    click.echo(f"{report.score:g}/{report.max_score:g} points; results: {results_path}")


@main.command()
@click.argument("key")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="the zip to write (default: autograder-<assignment>.zip)",
)
def bundle(key: str, out: Path | None) -> None:
    """Write the autograder zip for assignment KEY (upload it to Gradescope)."""
    try:
        ex = exercise(key)
    except GradingError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    out = out or Path(f"autograder-{ex.slug}.zip")
    here = Path(__file__).parent
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in ("setup.sh", "run_autograder"):
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o755 << 16  # executable where Gradescope unpacks it
            zf.writestr(info, (here / name).read_bytes())
        zf.writestr("assignment.txt", ex.number + "\n")
        for name in _BUNDLED:
            if (PROJECT_ROOT / name).is_file():
                zf.write(PROJECT_ROOT / name, name)
        for folder in _BUNDLED_DIRS:
            for path in sorted((PROJECT_ROOT / folder).rglob("*")):
                rel = path.relative_to(PROJECT_ROOT)
                if (
                    path.is_file()
                    and not _SKIPPED & set(rel.parts)
                    and not any(path.match(p) for p in _SCRATCH)
                ):
                    zf.write(path, str(rel))
    click.echo(
        f"autograder for {ex.folder}: {out} (upload it on Gradescope's Configure Autograder page)"
    )


if __name__ == "__main__":
    main()
