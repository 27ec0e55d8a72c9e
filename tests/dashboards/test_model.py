"""Loading and validating dashboards in the shapes Grafana 10.2 exports (no stack needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab_stack import dashboards
from lab_stack.dashboards import DashboardError, interpolate, load, validate
from lab_stack.provisioning import LAB_DATASOURCES, Datasource
from tests.dashboards.conftest import (
    EXPORTED,
    INFRA_DASHBOARD,
    ML_DASHBOARD,
    ROOT,
    STACK_DASHBOARD,
    document,
)


def messages(doc: dict[str, object]) -> list[str]:
    return [str(p) for p in validate(load(doc))]


def test_public_names_are_pinned() -> None:
    """The package exports exactly the documented names."""
    assert sorted(dashboards.__all__) == sorted(
        [
            "NO_QUERY_PANELS",
            "PANEL_TYPES",
            "Dashboard",
            "DashboardError",
            "DashboardProblem",
            "DashboardRun",
            "Panel",
            "PanelResult",
            "Preview",
            "Series",
            "Target",
            "TargetResult",
            "Threshold",
            "Variable",
            "Window",
            "check",
            "format_value",
            "interpolate",
            "layout",
            "load",
            "preview",
            "resolve_datasource",
            "run",
            "threshold_color",
            "validate",
        ]
    )


@pytest.mark.parametrize("path", [ML_DASHBOARD, INFRA_DASHBOARD, STACK_DASHBOARD, EXPORTED])
def test_solution_and_exported_dashboards_validate(path: Path) -> None:
    """The solution dashboards and a shared export (id null, __inputs, null base) have no problems."""
    board = dashboards.check(path)
    assert board.panels
    assert validate(board) == []


def test_solution_dashboards_import_into_grafana_10_2() -> None:
    """The solution dashboards carry a fixed uid, schemaVersion 38/39 and the required keys."""
    for path in (ML_DASHBOARD, INFRA_DASHBOARD, STACK_DASHBOARD):
        raw = json.loads(path.read_text())
        assert raw["schemaVersion"] in (38, 39)
        assert raw["id"] is None and raw["uid"]
        assert {"templating", "annotations", "time", "panels", "title"} <= set(raw)


def test_stack_copies_match_the_solutions() -> None:
    """The dashboards the stack provisions are the solution dashboards, byte for byte."""
    for name, solution in (
        ("ml_service.json", ML_DASHBOARD),
        ("infrastructure.json", INFRA_DASHBOARD),
    ):
        assert (ROOT / "lab_stack/grafana/dashboards" / name).read_text() == solution.read_text()


def test_exported_rows_are_flattened_with_their_row() -> None:
    """Panels nested in a collapsed row are found and know their row."""
    board = load(EXPORTED)
    logs = board.panel("Gateway logs")
    assert logs.row == "Logs and traces" and logs.nested
    assert board.panel("CPU busy").nested is False
    assert board.inputs == {"DS_PROMETHEUS": "prometheus", "DS_LOKI": "loki", "DS_TEMPO": "tempo"}


def test_datasource_references_resolve_in_every_form() -> None:
    """${DS_X} inputs, $datasource variables, names and {type, uid} objects all resolve."""
    board = load(EXPORTED)
    resolve = dashboards.resolve_datasource
    assert resolve({"type": "loki", "uid": "${DS_LOKI}"}, board)[0].uid == "loki"  # type: ignore[union-attr]
    assert resolve("$datasource", board)[0].uid == "prometheus"  # type: ignore[union-attr]
    assert resolve("Prometheus", board)[0].uid == "prometheus"  # type: ignore[union-attr]
    assert resolve(None, board)[0].uid == "prometheus"  # type: ignore[union-attr]
    found, why = resolve({"type": "prometheus", "uid": "loki"}, board)
    assert found is None and "is a loki datasource" in why


def test_api_envelope_is_unwrapped() -> None:
    """The /api/dashboards/uid/<uid> shape {"dashboard", "meta"} loads like the bare JSON."""
    board = load({"dashboard": document(ML_DASHBOARD), "meta": {"provisioned": True}})
    assert board.uid == "ml-service"


def test_wrong_datasource_uid_names_the_panel_and_field() -> None:
    """A target pointing at an unprovisioned uid is reported with panel title and field."""
    doc = document(ML_DASHBOARD)
    doc["panels"][1]["targets"][0]["datasource"] = {"type": "prometheus", "uid": "promethues"}
    found = messages(doc)
    assert len(found) == 1
    assert "'Prediction rate by status' (id 2)" in found[0]
    assert "targets[0].datasource" in found[0] and "'promethues'" in found[0]


def test_datasource_of_the_wrong_type_is_rejected() -> None:
    """A Prometheus-typed reference to the Loki uid is reported."""
    doc = document(ML_DASHBOARD)
    doc["panels"][2]["datasource"] = {"type": "prometheus", "uid": "loki"}
    doc["panels"][2]["targets"][0]["datasource"] = {"type": "prometheus", "uid": "loki"}
    (found,) = messages(doc)
    assert "'Error ratio'" in found and "is a loki datasource" in found


@pytest.mark.parametrize(
    ("change", "field", "text"),
    [
        (lambda p: p.update(type="singlestat"), "type", "replaced singlestat with stat"),
        (lambda p: p.pop("gridPos"), "gridPos", "is missing"),
        (lambda p: p["gridPos"].update(x=20, w=12), "gridPos", "24-column grid"),
        (lambda p: p.update(targets=[]), "targets", "queries nothing"),
        (lambda p: p["targets"][0].update(expr=""), "targets[0].expr", "is empty"),
        (lambda p: p["targets"][0].pop("refId"), "targets[0].refId", "is missing"),
        (lambda p: p.update(title=""), "title", "is empty"),
        (
            lambda p: p["fieldConfig"]["defaults"]["thresholds"]["steps"].append(
                {"color": "red", "value": None}
            ),
            "thresholds.steps[3].value",
            "only the first",
        ),
    ],
)
def test_broken_panels_fail_naming_the_panel(change, field: str, text: str) -> None:  # type: ignore[no-untyped-def]
    """Each kind of broken panel yields one problem that names the panel, the field and the fault."""
    doc = document(ML_DASHBOARD)
    change(doc["panels"][3])  # "In-flight predictions", a stat panel
    found = messages(doc)
    assert found, "expected a problem"
    assert any("(id 4)" in m and field in m and text in m for m in found), found


def test_overlapping_panels_are_reported() -> None:
    """Two panels on the same cells are reported with both names."""
    doc = document(ML_DASHBOARD)
    doc["panels"][2]["gridPos"] = dict(doc["panels"][1]["gridPos"])
    (found,) = messages(doc)
    assert "'Error ratio'" in found and "overlaps panel 'Prediction rate by status'" in found


def test_duplicate_panel_ids_and_missing_uid_are_reported() -> None:
    """Panel ids must be unique and the dashboard needs a uid."""
    doc = document(STACK_DASHBOARD)
    doc["panels"][1]["id"] = 1
    del doc["uid"]
    found = messages(doc)
    assert any(m.startswith("dashboard, uid") for m in found)
    assert any("'Target health by job' (id 1), id" in m for m in found)


def test_check_raises_with_every_problem() -> None:
    """check() raises DashboardError listing the problems and a hint."""
    doc = document(ML_DASHBOARD)
    doc["panels"][1]["type"] = "graphz"
    doc["panels"][2]["targets"][0]["expr"] = "  "
    with pytest.raises(DashboardError, match=r"2 problem\(s\)") as info:
        dashboards.check(doc)
    assert len(info.value.problems) == 2
    assert "Hint:" in str(info.value)


def test_invalid_json_and_missing_file_are_explained(tmp_path: Path) -> None:
    """A JSON syntax error or a wrong path fails with a message saying so."""
    bad = tmp_path / "bad.json"
    bad.write_text('{"title": "x",}')
    with pytest.raises(DashboardError, match="is not valid JSON"):
        load(bad)
    with pytest.raises(DashboardError, match="does not exist"):
        load(tmp_path / "missing.json")


def test_custom_datasources_are_used_for_resolution() -> None:
    """With a student's provisioned datasources, references resolve against those."""
    mine = [Datasource("prom-main", "Main", "prometheus", is_default=True)]
    assert validate(load(ML_DASHBOARD), datasources=mine)  # uid "prometheus" is not provisioned
    assert validate(load(ML_DASHBOARD), datasources=[*LAB_DATASOURCES, *mine]) == []


def test_interpolation_of_variables_and_formats() -> None:
    """$var, ${var}, ${var:regex}, [[var]] and multi-values become PromQL text; $1 survives."""
    board = load(EXPORTED)
    values = {"model": ("fraud", "churn.v2"), "job": ("api",)}
    text = 'x{m=~"$model", j="${job}", k="[[job]]"} label_replace(y, "a", "$1", "b", "(.*)")'
    assert interpolate(text, values, board.variables) == (
        'x{m=~"(fraud|churn\\.v2)", j="api", k="api"} label_replace(y, "a", "$1", "b", "(.*)")'
    )
    assert interpolate("$model", {"model": ("$__all",)}, board.variables) == ".*"
