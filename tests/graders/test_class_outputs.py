"""What students and the LMS receive from class grading: feedback, results.json, the layout read.

Fast tests over reports built in memory; the end-to-end class runs are in test_classroom.py.
"""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from graders import exercise
from graders.classroom import Outcome, collect, find_submissions, grade_class, unrun_report
from graders.errors import GradingError
from graders.feedback import feedback_html, student_view
from graders.gradescope import SCHEMA_PATH, results_json, validate
from graders.gradescope.__main__ import main as gradescope_main
from graders.report import CheckResult, Report

SECRET = "Expected exactly 137 requests with status=error"


def _report() -> Report:
    return Report(
        "02",
        "metrics.ipynb",
        [
            CheckResult("targets_up", "Both replicas UP", 2.0, 2.0, False, True),
            CheckResult(
                "error_ratio_query",
                "PromQL: error ratio",
                0.0,
                2.0,
                False,
                False,
                "Expected an error ratio of 0.12; found 0.15. Hint: divide by all predictions <b>",
            ),
            CheckResult("counts", "Counters match", 0.0, 3.0, True, False, SECRET),
            CheckResult("in_flight", "In-flight back to zero", 1.0, 1.0, True, True),
        ],
    )


def test_feedback_shows_public_messages_and_never_hidden_ones() -> None:
    """A public check's message (escaped) is on the page; a hidden one's is not, only its points."""
    page = feedback_html(_report(), student="alice", assignment="ex02_metrics")
    assert "divide by all predictions &lt;b&gt;" in page
    assert SECRET not in page and "137" not in page
    assert "Counters match" in page and "0/3" in page
    assert [v.message for v in student_view(_report()) if v.hidden] == [None, None]


def test_results_json_fits_the_schema_and_keeps_hidden_checks_for_later() -> None:
    """results.json validates; hidden tests are after_published with title and points only."""
    results = results_json(_report(), execution_time=12.5)
    validate(results)
    jsonschema.validate(results, json.loads(SCHEMA_PATH.read_text()))
    assert (results["score"], results["max_score"]) == (3.0, 8.0)
    hidden = [t for t in results["tests"] if t["visibility"] == "after_published"]
    assert [t["output"] for t in hidden] == [
        "Counters match: 0/3 points (hidden check)",
        "In-flight back to zero: 1/1 points (hidden check)",
    ]
    assert SECRET not in json.dumps(results)
    public = next(t for t in results["tests"] if t["name"] == "PromQL: error ratio")
    assert public["visibility"] == "visible" and "Hint:" in public["output"]


def test_schema_rejects_what_gradescope_would_not_read() -> None:
    """A test without visibility, or an unknown visibility, fails validation."""
    results = results_json(_report(), execution_time=1.0)
    del results["tests"][0]["visibility"]
    with pytest.raises(jsonschema.ValidationError, match="visibility"):
        validate(results)
    results = results_json(_report(), execution_time=1.0)
    results["tests"][0]["visibility"] = "students"
    with pytest.raises(jsonschema.ValidationError):
        validate(results)


def test_submissions_are_found_in_nbgrader_layout_sorted(tmp_path: Path) -> None:
    """submitted/<student>/<assignment>/<notebook>, sorted; a folder without it says so."""
    ex = exercise("02")
    for student in ("zoe", "adam"):
        folder = tmp_path / student / ex.folder
        folder.mkdir(parents=True)
        (folder / ex.notebook).write_text("{}")
    (tmp_path / "mia" / ex.folder).mkdir(parents=True)
    (tmp_path / "other" / "ex03_logging").mkdir(parents=True)
    found = find_submissions(ex, tmp_path)
    assert [s.student for s in found] == ["adam", "mia", "zoe"]
    assert found[1].notebook is None and "Hint:" in (found[1].problem or "")
    with pytest.raises(GradingError, match="nbgrader collect"):
        find_submissions(ex, tmp_path / "missing")


def test_index_out_of_range_names_the_class_size(tmp_path: Path) -> None:
    """--index past the last submission fails before anything starts, with the valid range."""
    ex = exercise("02")
    (tmp_path / "adam" / ex.folder).mkdir(parents=True)
    with pytest.raises(GradingError, match=r"holds 1 submissions.*from 0 to 0"):
        grade_class("02", submitted=tmp_path, out=tmp_path / "out", index=3)


def test_collect_without_results_says_grade_first(tmp_path: Path) -> None:
    """Collecting an empty --out folder is an error with a hint."""
    with pytest.raises(GradingError, match="Hint: grade first"):
        collect("02", out=tmp_path, course=tmp_path)


def test_outcome_round_trips_through_grade_json() -> None:
    """grade.json holds everything --collect needs."""
    outcome = Outcome("bob", "ex02_metrics", "failed", unrun_report(exercise("02"), "hung"))
    back = Outcome.from_dict(json.loads(json.dumps(outcome.to_dict())))
    assert back.points() == outcome.points() and back.report.reason == "hung"
    assert back.report.max_score == exercise("02").total_points


def test_gradescope_run_without_a_notebook_still_writes_results(tmp_path: Path) -> None:
    """A submission with no notebook gets a valid results.json scoring 0, and exit status 0."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "notes.txt").write_text("no notebook here")
    results = tmp_path / "results" / "results.json"
    out = CliRunner().invoke(
        gradescope_main,
        [
            "run",
            "--assignment",
            "02",
            "--submission",
            str(tmp_path / "sub"),
            "--results",
            str(results),
        ],
    )
    assert out.exit_code == 0, out.output
    data = json.loads(results.read_text())
    validate(data)
    assert data["score"] == 0 and "no notebook metrics.ipynb" in data["output"]
    assert len(data["tests"]) == len(exercise("02").checks)


def test_gradescope_bundle_holds_the_entry_points(tmp_path: Path) -> None:
    """The zip has setup.sh and an executable run_autograder at its root, and the grader."""
    target = tmp_path / "autograder.zip"
    out = CliRunner().invoke(gradescope_main, ["bundle", "02", "--out", str(target)])
    assert out.exit_code == 0, out.output
    with zipfile.ZipFile(target) as zf:
        names = set(zf.namelist())
        assert {"setup.sh", "run_autograder", "assignment.txt", "pyproject.toml"} <= names
        assert "graders/classroom.py" in names and "graders/gradescope/results.schema.json" in names
        assert not [n for n in names if "__pycache__" in n or n.startswith("tests/")]
        assert zf.read("assignment.txt").decode().strip() == "02"
        mode = zf.getinfo("run_autograder").external_attr >> 16
        assert mode & stat.S_IXUSR
        assert b"python -m graders.gradescope run" in zf.read("run_autograder")
