"""``python -m graders NN [--notebook PATH] [--json] [--html PATH] [--public-only]``.

Runs a copy of the notebook in a fresh kernel against the lab stack (started when down), prints a
table of checks with points and hints, and exits 1 when any check fails or the notebook did not
run to its end (2 on usage errors). ``NN`` is an exercise's number, ``capstone`` (the practical
assessment) or ``kc`` (the knowledge check).

Two more commands share the entry point:

* ``python -m graders class ASSIGNMENT [--workers N] ...`` grades a class (:mod:`graders.classroom`);
* ``python -m graders drill [NAME]`` runs an incident drill (:mod:`graders.drills`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from graders.errors import GradingError
from graders.registry import exercise
from graders.report import grade
from lab_stack.errors import LabError
from lab_stack.settings import get_settings

__all__ = ["cli", "grade_one"]

#: Sub-commands beside ``NN``: name -> module whose ``main`` is a click command.
COMMANDS = {"class": "graders.classroom", "drill": "graders.drills"}


@click.command()
@click.argument("number")
@click.option(
    "--notebook",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="the notebook to grade (default: notebooks/<exercise>/<notebook>)",
)
@click.option(
    "--json",
    "json_path",
    default=None,
    is_flag=False,
    flag_value="-",
    help="write the JSON report to PATH (default .lab/reports/exNN.json; '-' prints it)",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="also write an HTML report to PATH",
)
@click.option("--public-only", is_flag=True, help="run only the public checks")
def grade_one(
    number: str,
    notebook: Path | None,
    json_path: str | None,
    html_path: Path | None,
    public_only: bool,
) -> None:
    """Grade exercise NUMBER (e.g. 02) against the running lab stack."""
    console = Console(stderr=json_path == "-")
    try:
        ex = exercise(number)
        with Progress(
            TextColumn("running {task.description}"),
            BarColumn(),
            TextColumn("cell {task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task(ex.notebook, total=None)

            def on_cell(index: int, total: int, seconds: float) -> None:
                progress.update(task, completed=index + 1, total=total)

            report = grade(
                ex.number, notebook=notebook, include_hidden=not public_only, on_cell=on_cell
            )
    except (GradingError, LabError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    console.print(report.table())
    console.print(f"notebook {report.notebook_seconds:.1f} s, checks {report.checks_seconds:.1f} s")
    if json_path == "-":
        click.echo(report.to_json())
    else:
        out = Path(json_path) if json_path else get_settings().home / "reports" / f"{ex.slug}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report.to_json())
        console.print(f"JSON report: {out}")
    if html_path is not None:
        html_path.write_text(report.to_html())
        console.print(f"HTML report: {html_path}")
    sys.exit(0 if report.passed else 1)


def cli(argv: list[str] | None = None) -> None:
    """Dispatch ``class`` and ``drill`` to their modules; anything else grades one notebook."""
    import importlib

    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in COMMANDS:
        command = importlib.import_module(COMMANDS[args[0]]).main
        command.main(args=args[1:], prog_name=f"python -m graders {args[0]}")
    else:
        grade_one.main(args=args, prog_name="python -m graders")


if __name__ == "__main__":
    cli()
