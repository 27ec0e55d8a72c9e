"""The capstone grader's parts that grading the solution, starter and mutants does not prove.

tests/graders/test_validity.py grades the solution (full points), the starter (zero) and every
mutant of graders/test_capstone_practical.py against a live stack. What is left here, without a
stack: the judgements of the static helpers on the solution's own files and on wrong ones, the
span-tree verdict, and the solution's rules against exercise 06's hidden latency cases.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from graders import capstone_checks as cc
from graders import ex06_checks as ex06
from graders.test_capstone_practical import EXERCISE
from lab_stack.clients.tempo import Span
from lab_stack.settings import PROJECT_ROOT

NOTEBOOK = PROJECT_ROOT / "solutions" / "capstone" / "capstone.ipynb"
SERVICE = "capstone-test"


def _write(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_text(ex06.written_file(NOTEBOOK, name))
    return path


def _panel(title: str, *exprs: str) -> dict:
    return {
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "prometheus"},
        "targets": [{"refId": chr(65 + i), "expr": e} for i, e in enumerate(exprs)],
    }


SCOPED = 'service="$service"'
GOOD_PANELS = [
    _panel("Rate", f"sum(rate(ml_predictions_total{{{SCOPED}}}[$__rate_interval]))"),
    _panel(
        "Errors",
        f'sum(rate(ml_predictions_total{{{SCOPED},status="error"}}[5m])) / '
        f"sum(rate(ml_predictions_total{{{SCOPED}}}[5m]))",
    ),
    _panel(
        "Latency",
        *(
            f"histogram_quantile({q}, sum by (le) "
            f"(rate(ml_prediction_duration_seconds_bucket{{{SCOPED}}}[5m])))"
            for q in ("0.5", "0.95", "0.99")
        ),
    ),
    _panel("GPU", 'DCGM_FI_DEV_GPU_UTIL{service="$service-gpu"}'),
    _panel("GPU memory", 'DCGM_FI_DEV_FB_USED{service="$service-gpu"}'),
]


def _board(panels: list[dict]) -> dict:
    panels = copy.deepcopy(panels)
    for i, panel in enumerate(panels):  # unique ids, no overlapping grid positions
        panel["id"], panel["gridPos"] = i + 1, {"h": 8, "w": 12, "x": 0, "y": 8 * i}
    return {
        "uid": "t",
        "title": "t",
        "schemaVersion": 38,
        "templating": {"list": [{"name": "service", "type": "custom", "query": "a"}]},
        "panels": panels,
    }


def test_every_check_hint_names_an_exercise() -> None:
    """revisit() puts the exercise's number and topic in front of the advice."""
    assert cc.revisit("05", "push.") == "revisit exercise 05 (drift): push."
    assert set(cc.EXERCISES) == {"01", "02", "03", "04", "05", "06"}
    assert EXERCISE.total_points == sum(c.points for c in EXERCISE.checks.values()) > 0


def test_a_complete_dashboard_has_no_problems(tmp_path: Path) -> None:
    """Rate, p50/p95/p99, errors, GPU utilisation and memory, all scoped: nothing to report."""
    path = tmp_path / "dashboard.json"
    path.write_text(json.dumps(_board(GOOD_PANELS)))
    assert cc.dashboard_problems(path) == []


@pytest.mark.parametrize(
    ("drop", "named"),
    [("GPU", "GPU utilisation"), ("GPU memory", "GPU memory"), ("Errors", "error rate")],
)
def test_a_dashboard_without_a_signal_names_it(tmp_path: Path, drop: str, named: str) -> None:
    """A missing panel is named by its signal."""
    path = tmp_path / "dashboard.json"
    path.write_text(json.dumps(_board([p for p in GOOD_PANELS if p["title"] != drop])))
    problems = cc.dashboard_problems(path)
    assert any(named in p for p in problems), problems


def test_an_unscoped_panel_is_reported(tmp_path: Path) -> None:
    """A query that ignores $service would mix every service: the panel is named."""
    panels = copy.deepcopy(GOOD_PANELS)
    panels[0]["targets"][0]["expr"] = "sum(rate(ml_predictions_total[5m]))"
    path = tmp_path / "dashboard.json"
    path.write_text(json.dumps(_board(panels)))
    assert any("Rate" in p and "$service" in p for p in cc.dashboard_problems(path))


def test_the_solution_rules_pass_and_their_mistakes_are_named(tmp_path: Path) -> None:
    """The solution's rules (with its runbooks) have no problem; p50 and a missing for: are named."""
    rules_path = _write(tmp_path, "alert_rules.yml")
    (tmp_path / "runbooks").mkdir()
    for name in (
        "high-prediction-latency",
        "high-error-rate",
        "gpu-memory",
        "data-drift",
        "data-quality",
    ):
        (tmp_path / "runbooks" / f"{name}.md").write_text(
            "# R\n\n## What it means\n\n## Triage\n\n## Mitigation\n\n" + "word " * 70
        )
    rules = ex06.alert_rules(rules_path)
    assert cc.rule_problems(rules, tmp_path) == []
    wrong = copy.deepcopy(rules)
    wrong["HighPredictionLatency"]["expr"] = rules["HighPredictionLatency"]["expr"].replace(
        "0.99", "0.5"
    )
    del wrong["HighPredictionLatency"]["for"]
    del wrong["DataQualityIncident"]
    problems = " | ".join(cc.rule_problems(wrong, tmp_path))
    assert "not the p99" in problems
    assert "want 5m" in problems
    assert "no alert DataQualityIncident" in problems


def test_the_solution_latency_rule_passes_the_hidden_cases(tmp_path: Path) -> None:
    """Exercise 06's hidden latency cases accept the capstone's HighPredictionLatency as written."""
    rules = ex06.alert_rules(_write(tmp_path, "alert_rules.yml"))
    assert cc.hidden_latency_problems(rules) == []


def test_module_problems_read_the_inspection() -> None:
    """The import's findings become problems: side effects, a wrong signature, a raising call."""
    good = {
        "error": None,
        "has_instrument": True,
        "params": [
            ["service", "POSITIONAL_OR_KEYWORD"],
            ["registry", "KEYWORD_ONLY"],
            ["log_path", "KEYWORD_ONLY"],
            ["otlp_endpoint", "KEYWORD_ONLY"],
        ],
        "new_files": [],
        "new_threads": 0,
        "global_provider": "ProxyTracerProvider",
        "returns_hooks": True,
    }
    assert cc.module_problems(good) == []
    bad = {
        **good,
        "params": good["params"][:2],
        "new_threads": 1,
        "global_provider": "TracerProvider",
        "call_error": "NotImplementedError: ",
    }
    text = " | ".join(cc.module_problems(bad))
    for words in ("log_path", "thread", "global tracer provider", "NotImplementedError"):
        assert words in text


def _span(span_id: str, parent: str | None, name: str, kind: str, service: str) -> Span:
    return Span("t" * 32, span_id, parent, name, f"SPAN_KIND_{kind}", service, 0, 1)


def _trace() -> list[Span]:
    return [
        _span("a", None, "POST /predict", "SERVER", SERVICE),
        _span("b", "a", "fetch_features", "CLIENT", SERVICE),
        _span("c", "b", "GET /features/{user_id}", "SERVER", f"{SERVICE}-features"),
        _span("d", "a", "model_inference", "INTERNAL", SERVICE),
    ]


def test_a_complete_trace_has_no_problems() -> None:
    """Gateway SERVER, CLIENT fetch, feature SERVER under it, inference: complete."""
    assert cc.trace_problems(_trace(), SERVICE) == []


def test_trace_problems_name_the_missing_call() -> None:
    """No inference span, a feature span not under the client span, a wrong service name."""
    spans = [s for s in _trace() if s.name != "model_inference"]
    assert cc.trace_problems(spans, SERVICE) == ["no model inference span (name with 'inference')"]
    orphan = [*_trace()[:2], _span("c", None, "GET /features/x", "SERVER", "f"), _trace()[3]]
    assert any("not a child" in p for p in cc.trace_problems(orphan, SERVICE))
    assert any("service.name" in p for p in cc.trace_problems(_trace(), "other"))
