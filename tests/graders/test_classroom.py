"""Class grading against real processes: concurrent verdicts equal sequential ones, a misbehaving
submission costs only its own slot, and the results reach nbgrader's gradebook, the feedback
pages, the class CSV and Gradescope's results.json."""

from __future__ import annotations

import csv
import html
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import nbformat
import pytest
from click.testing import CliRunner
from markupsafe import escape
from nbformat.v4 import new_code_cell, new_notebook

import lab_stack
from graders import exercise
from graders.classroom import FAILED, GRADED, Outcome, collect, grade_class
from graders.classroom import main as class_main
from graders.gradescope import SCHEMA_PATH
from graders.gradescope.__main__ import main as gradescope_main
from graders.mutants import write_mutant
from graders.release import venv_env
from lab_stack.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.slow

EX = exercise("02")
MUTANT = "user_id_label"  # fails a hidden check (cardinality_bounded), its message names values


def _copy(src: Path, submitted: Path, student: str) -> None:
    shutil.copytree(
        src, submitted / student / EX.folder, ignore=shutil.ignore_patterns("answers_*.json")
    )


def _notebook(submitted: Path, student: str, *sources: str) -> None:
    folder = submitted / student / EX.folder
    folder.mkdir(parents=True)
    nb = new_notebook(
        cells=[new_code_cell(s) for s in sources],
        metadata={
            "kernelspec": {"name": "workbook", "display_name": "workbook", "language": "python"}
        },
    )
    nbformat.write(nb, folder / EX.notebook)


def _forms(text: str) -> set[str]:
    """``text`` as written and HTML-escaped either way (Jinja2's and the standard library's)."""
    return {text, str(escape(text)), html.escape(text)}


def _by_student(outcomes: list[Outcome]) -> dict[str, Outcome]:
    return {o.student: o for o in outcomes}


def test_concurrent_class_grade_equals_sequential_and_fills_every_output(
    stack: lab_stack.Stack, lab_settings: Settings, tmp_path: Path
) -> None:
    """A solution, a mutant and a starter graded two at once on one stack get their sequential
    verdicts; the gradebook (read back by nbgrader export), feedback, CSV and results.json follow."""
    course = tmp_path / "course"
    submitted = course / "submitted"
    _copy(EX.solution_dir(PROJECT_ROOT), submitted, "alice")
    mutant = next(m for m in EX.mutants if m.name == MUTANT)
    _copy(write_mutant(EX, mutant, tmp_path / "mutants").parent, submitted, "bob")
    _copy(EX.release_dir(PROJECT_ROOT), submitted, "carol")
    (submitted / "alice" / EX.folder / "timestamp.txt").write_text("2026-11-30 10:00:00 UTC")

    before = stack.targets().get("ml-service", [])  # earlier tests' targets on this stack
    sequential = grade_class(
        "02", submitted=submitted, out=tmp_path / "sequential", workers=1, settings=lab_settings
    )
    out = course / "autograded"
    concurrent = grade_class("02", submitted=submitted, out=out, workers=2, settings=lab_settings)

    # the same verdict, check by check, whether graded alone or beside another submission
    assert {o.student: o.points() for o in concurrent} == {
        o.student: o.points() for o in sequential
    }
    one, two = sorted(concurrent, key=lambda o: o.started_at)[:2]
    assert one.slot != two.slot and two.started_at < one.started_at + one.seconds  # overlapped
    got = _by_student(concurrent)
    assert all(o.status == GRADED for o in concurrent), [o.reason for o in concurrent]
    assert got["alice"].report.score == EX.total_points
    assert got["bob"].points()["cardinality_bounded"] == 0
    assert 0 < got["bob"].report.score < EX.total_points
    assert got["carol"].report.score == 0
    # both kernels' targets were taken out when their runs ended, and nothing else
    assert stack.targets().get("ml-service", []) == before

    summary = collect("02", out=out, course=course, submitted=submitted)
    assert (len(summary.graded), len(summary.failed)) == (3, 0)
    shares = [c.mean / c.max_points for c in summary.checks]
    assert shares == sorted(shares) and shares[0] < 1.0  # the class's hardest check first

    # feedback: public messages with their hints, hidden checks' messages never
    public_messages = {r.message for o in concurrent for r in o.report.results if not r.hidden}
    hidden_messages = [
        r.message
        for o in concurrent
        for r in o.report.results
        # (a hidden check failing for a reason a public one states, e.g. no targets, is no secret)
        if r.hidden and r.message and r.message not in public_messages
    ]
    assert hidden_messages  # the starter fails the hidden checks, with messages of their own
    for o in concurrent:
        page = (course / "feedback" / o.student / EX.folder / "metrics.html").read_text()
        for message in hidden_messages:
            assert not any(form in page for form in _forms(message))
        for r in o.report.results:
            if not r.hidden and not r.passed:
                assert str(escape(r.message)) in page and "Hint:" in page

    # Gradescope: results.json per submission, valid, hidden checks for after publication only
    schema = json.loads(SCHEMA_PATH.read_text())
    for o in concurrent:
        results = json.loads((out / o.student / EX.folder / "results.json").read_text())
        jsonschema.validate(results, schema)
        assert results["score"] == o.report.score and results["max_score"] == EX.total_points
        hidden = [t for t in results["tests"] if t["visibility"] == "after_published"]
        assert len(hidden) == len([c for c in EX.checks.values() if c.hidden])
        assert not any(m in json.dumps(results) for m in hidden_messages)

    # the class CSV
    with open(out / f"{EX.folder}.csv") as handle:
        rows = {r["student"]: r for r in csv.DictReader(handle)}
    assert rows["bob"]["cardinality_bounded"] == "0"
    assert rows["alice"]["total"] == f"{EX.total_points:g}"
    assert {r["status"] for r in rows.values()} == {GRADED}

    # nbgrader's gradebook, read back by nbgrader's own export
    grades = tmp_path / "grades.csv"
    subprocess.run(
        [sys.executable, "-m", "nbgrader", "export", f"--db={summary.db_url}", f"--to={grades}"],
        cwd=course,
        env=venv_env(),
        check=True,
        capture_output=True,
    )
    with open(grades) as handle:
        exported = {r["student_id"]: r for r in csv.DictReader(handle)}
    for o in concurrent:
        assert float(exported[o.student]["score"]) == o.report.score
        assert float(exported[o.student]["max_score"]) == EX.total_points
    assert exported["alice"]["timestamp"].startswith("2026-11-30 10:00:00")


def test_hang_crash_and_flood_fail_only_their_own_slot(
    stack: lab_stack.Stack, lab_settings: Settings, tmp_path: Path
) -> None:
    """A hanging, a kernel-killing and a flooding submission fail with their reasons while the
    solution beside them is graded in full; the killed one's scrape target is taken out."""
    submitted = tmp_path / "submitted"
    _notebook(
        submitted,
        "a-hang",
        "import http.server, threading, lab_stack\n"
        "srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), http.server.SimpleHTTPRequestHandler)\n"
        "threading.Thread(target=srv.serve_forever, daemon=True).start()\n"
        "lab_stack.connect().register_target('class-hang', f'http://127.0.0.1:{srv.server_port}/metrics')",
        "import time\ntime.sleep(3600)",
    )
    _copy(EX.solution_dir(PROJECT_ROOT), submitted, "b-solution")
    _notebook(submitted, "c-crash", "x = 1", "import os; os._exit(1)")
    _notebook(submitted, "d-flood", "while True: print('x' * 10000)")

    outcomes = _by_student(
        grade_class(
            "02",
            submitted=submitted,
            out=tmp_path / "out",
            workers=2,
            settings=lab_settings,
            public_only=True,
            timeout=100,
        )
    )
    assert outcomes["a-hang"].status == FAILED
    assert "class time-out of 100 s" in (outcomes["a-hang"].reason or "")
    assert outcomes["c-crash"].status == FAILED
    assert "kernel died while running cell 2" in (outcomes["c-crash"].reason or "")
    assert outcomes["d-flood"].status == FAILED
    assert "printed more than" in (outcomes["d-flood"].reason or "")
    for name in ("a-hang", "c-crash", "d-flood"):
        assert outcomes[name].report.score == 0
        assert all(r.message.startswith("not graded:") for r in outcomes[name].report.results)
    solution = outcomes["b-solution"]
    assert solution.status == GRADED, solution.reason
    public = sum(c.points for c in EX.public_checks())
    assert solution.report.score == public, [
        r.message for r in solution.report.results if not r.passed
    ]
    assert "class-hang" not in stack.targets()


def test_index_then_collect_from_the_command_line(
    stack: lab_stack.Stack, lab_settings: Settings, tmp_path: Path
) -> None:
    """--index grades one submission (an Indexed Job pod); --collect merges what the pods wrote."""
    course = tmp_path / "course"
    _copy(EX.release_dir(PROJECT_ROOT), course / "submitted", "dora")
    _notebook(course / "submitted", "eve", "raise SystemExit('not done')")
    env = {"LAB_HOME": str(lab_settings.home), "LAB_BACKEND": lab_settings.backend}
    runner = CliRunner()
    args = ["02", "--course", str(course), "--public-only"]
    first = runner.invoke(class_main, [*args, "--index", "1"], env=env)
    assert first.exit_code == 0, first.output
    assert "eve: graded, 0/" in first.output
    assert not (course / "autograded" / "dora").exists()
    second = runner.invoke(class_main, [*args, "--index", "0"], env=env)
    assert second.exit_code == 0, second.output
    merged = runner.invoke(class_main, [*args, "--collect"], env=env)
    assert merged.exit_code == 0, merged.output
    assert "failed to run" in merged.output and "nbgrader export" in merged.output
    assert (course / "gradebook.db").is_file()
    assert (course / "feedback" / "dora" / EX.folder / "metrics.html").is_file()
    with open(course / "autograded" / f"{EX.folder}.csv") as handle:
        assert [r["student"] for r in csv.DictReader(handle)] == ["dora", "eve"]


def test_gradescope_autograder_grades_a_submission_folder(
    stack: lab_stack.Stack, lab_settings: Settings, tmp_path: Path
) -> None:
    """run_autograder's module grades /autograder/submission (here a temp folder) into results.json."""
    submission = tmp_path / "submission"
    shutil.copytree(EX.release_dir(PROJECT_ROOT), submission)  # the starter, as uploaded
    results = tmp_path / "results" / "results.json"
    env = {"LAB_HOME": str(lab_settings.home), "LAB_BACKEND": lab_settings.backend}
    args = ["run", "--assignment", "02", "--submission", str(submission)]
    out = CliRunner().invoke(
        gradescope_main, [*args, "--results", str(results), "--public-only"], env=env
    )
    assert out.exit_code == 0, out.output
    data = json.loads(results.read_text())
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    assert data["score"] == 0 and data["max_score"] == sum(c.points for c in EX.public_checks())
    assert all(t["status"] == "failed" and "Hint:" in t["output"] for t in data["tests"])
