"""Dashboards run against the real backends of the session stack, and previewed as PNGs."""

from __future__ import annotations

from pathlib import Path

import lab_stack
from lab_stack import dashboards
from tests.dashboards.conftest import (
    EXPORTED,
    INFRA_DASHBOARD,
    ML_DASHBOARD,
    STACK_DASHBOARD,
    document,
)


def test_ml_dashboard_shows_data_on_every_panel(stack: lab_stack.Stack, ml_source: str) -> None:
    """Every panel of the ML service dashboard returns data, with macros and $model_name filled."""
    run = dashboards.run(ML_DASHBOARD, stack=stack, window=120)
    assert run.problems() == []
    assert run.variables["model_name"] == "$__all"
    rate = run.result("Prediction rate by status").targets[0]
    assert "[$__rate_interval]" not in rate.query and 'model_name=~".*"' in rate.query
    assert {s.name for s in rate.series} >= {"ok", "error"}
    latency = run.result("Prediction latency p50 / p95 / p99")
    assert [t.series[0].name for t in latency.targets] == ["p50", "p95", "p99"]
    buckets = run.result("Confidence distribution").targets[0]
    assert "[120s]" in buckets.query and len(buckets.series) == 8


def test_infrastructure_and_stack_dashboards_show_data(stack: lab_stack.Stack) -> None:
    """node_exporter, the DCGM-named GPU source and Prometheus itself feed every panel."""
    # A fresh stack (it starts in about a second) has too few samples for the panels' rates, and
    # on a shared session stack a grader that applied a student's scrape config (exercise 01) may
    # have left a gap: the panels are judged once 15 s of the window have been scraped without one.
    stack.prometheus.wait_for(
        'count((min_over_time(up{job=~"node|dcgm|prometheus"}[15s]) == 1)'
        ' and (count_over_time(up{job=~"node|dcgm|prometheus"}[15s]) >= 12)) == 3',
        timeout=75,
    )
    for path in (INFRA_DASHBOARD, STACK_DASHBOARD):
        assert dashboards.run(path, stack=stack, window=60).problems() == []


def test_exported_dashboard_runs_promql_logql_and_traceql(
    stack: lab_stack.Stack, ml_source: str, logs_and_traces: None
) -> None:
    """A shared export with ${DS_*} inputs queries Prometheus, Loki (logs, metrics) and Tempo."""
    run = dashboards.run(EXPORTED, stack=stack, window=120)
    assert run.problems() == []
    assert run.result("Gateway logs").targets[0].lines[0][1].startswith("predict ok")
    assert run.result("Log lines").targets[0].series[0].name == "lines"
    assert run.result("Recent traces").targets[0].rows[0]["service"] == "dash-test"


def test_promql_typo_is_reported_naming_the_panel(stack: lab_stack.Stack, ml_source: str) -> None:
    """A panel whose PromQL does not parse is reported with the panel, refId and Prometheus' error."""
    doc = document(ML_DASHBOARD)
    doc["panels"][1]["targets"][0]["expr"] = (
        "sum by (status) (rate(ml_predictions_total[$__rate_interval])"
    )
    problems = dashboards.run(doc, stack=stack, window=60).problems()
    assert len(problems) == 1
    assert "'Prediction rate by status' (id 2), query A" in problems[0]
    assert "Hint:" in problems[0]


def test_missing_metric_panel_shows_no_data(stack: lab_stack.Stack, ml_source: str) -> None:
    """A panel querying a metric that does not exist is reported as showing no data."""
    doc = document(ML_DASHBOARD)
    doc["panels"][3]["targets"][0]["expr"] = "sum(ml_prediction_in_flight)"
    run = dashboards.run(doc, stack=stack, window=60)
    (problem,) = run.problems()
    assert "'In-flight predictions' (id 4) shows no data" in problem
    assert "sum(ml_prediction_in_flight)" in problem
    assert not run.result("In-flight predictions").has_data


def test_previews_render_the_solution_dashboards(
    stack: lab_stack.Stack, ml_source: str, logs_and_traces: None, tmp_path: Path
) -> None:
    """preview() writes a PNG laid out like gridPos, with every panel drawn from live data."""
    for path in (ML_DASHBOARD, INFRA_DASHBOARD, STACK_DASHBOARD, EXPORTED):
        shown = dashboards.preview(path, stack=stack, window=120, out=tmp_path / f"{path.stem}.png")
        data = shown.path.read_bytes()
        assert data.startswith(b"\x89PNG") and shown._repr_png_() == data
        width, height = shown.figure.get_size_inches()
        rows = max(y + h for _, (_, y, _, h) in dashboards.layout(dashboards.load(path)))
        assert width == 16.0 and abs(height - (rows * 16 / 24 * 0.49 + 0.45)) < 1e-6
        # one frame per panel (plus inner axes for charts): nothing was skipped
        assert len(shown.figure.axes) >= len(dashboards.load(path).panels)
        assert all(result.has_data for result in shown.run.panels), path
