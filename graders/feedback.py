"""What a student may see of a grade, and the feedback page built from it.

A public check shows its verdict and, when it failed, its message (expected, found, hint). A
hidden check shows only its title and the points earned: its message names expected values, so
it never leaves the grader — not in the feedback HTML, not in Gradescope's ``results.json``.
:func:`student_view` is the one place that decides this; everything students receive is built
from its output.

Example:
    >>> from graders.report import CheckResult, Report
    >>> report = Report("02", "metrics.ipynb", [
    ...     CheckResult("a", "Public", 0.0, 2.0, False, False, "Expected 2; found 1. Hint: add one."),
    ...     CheckResult("b", "Hidden", 0.0, 3.0, True, False, "Expected exactly 80 requests"),
    ... ])
    >>> [(v.title, v.message) for v in student_view(report)]
    [('Public', 'Expected 2; found 1. Hint: add one.'), ('Hidden', None)]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jinja2

from graders.report import Report

__all__ = ["CheckView", "feedback_html", "hidden_summary", "student_view", "write_feedback"]


@dataclass(frozen=True)
class CheckView:
    """One check as a student may see it: ``message`` is None for hidden checks."""

    name: str
    title: str
    points: float
    max_points: float
    passed: bool
    hidden: bool
    message: str | None


def student_view(report: Report) -> list[CheckView]:
    """The report's checks with every hidden check's message removed."""
    return [
        CheckView(
            r.name,
            r.title,
            r.points,
            r.max_points,
            r.passed,
            r.hidden,
            None if r.hidden else (r.message or ""),
        )
        for r in report.results
    ]


def hidden_summary(view: CheckView) -> str:
    """The only text shown for a hidden check: its title and the points earned."""
    return f"{view.title}: {view.points:g}/{view.max_points:g} points (hidden check)"


_TEMPLATE = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{{ assignment }} — feedback for {{ student }}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}
.pass{color:#060}.fail{color:#a00}.hidden{color:#555}
td,th{padding:4px 8px;vertical-align:top;text-align:left}tr{border-bottom:1px solid #ddd}
table{border-collapse:collapse}
</style></head><body>
<h1>{{ assignment }}: {{ "%g"|format(score) }}/{{ "%g"|format(max_score) }} points</h1>
<p>Student: <b>{{ student }}</b>{% if status != "graded" %} — <span class="fail">not graded</span>{% endif %}</p>
{% if reason %}<p class="fail">Notebook: {{ reason }}</p>{% endif %}
<table>
<tr><th></th><th>check</th><th>points</th><th>what to do</th></tr>
{% for c in checks %}
<tr class="{{ 'pass' if c.passed else 'fail' }}">
<td>{{ "✔" if c.passed else "✘" }}</td>
<td>{{ c.title }}{% if c.hidden %} <span class="hidden">(hidden check)</span>{% endif %}</td>
<td>{{ "%g"|format(c.points) }}/{{ "%g"|format(c.max_points) }}</td>
<td>{% if c.hidden %}<span class="hidden">Hidden checks show only their points.</span>{% elif not c.passed %}{{ c.message }}{% endif %}</td>
</tr>
{% endfor %}
</table>
</body></html>
"""
)


def feedback_html(report: Report, *, student: str, assignment: str, status: str = "graded") -> str:
    """A standalone HTML page of ``student``'s grade (hidden checks: title and points only)."""
    return _TEMPLATE.render(
        student=student,
        assignment=assignment,
        status=status,
        score=report.score,
        max_score=report.max_score,
        reason=report.reason,
        checks=student_view(report),
    )


def write_feedback(
    report: Report,
    *,
    feedback_dir: Path,
    student: str,
    assignment: str,
    notebook: str,
    status: str = "graded",
) -> Path:
    """Write the page where nbgrader keeps feedback: ``feedback/<student>/<assignment>/<nb>.html``."""
    path = feedback_dir / student / assignment / f"{Path(notebook).stem}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(feedback_html(report, student=student, assignment=assignment, status=status))
    return path
