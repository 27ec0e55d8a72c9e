"""Grafana dashboard JSON as Grafana 10.2 exports it: loaded, walked and validated offline.

Handles what real exports contain: ``"id": null``, a base threshold step with ``"value": null``,
``__inputs``/``__requires`` (export "for sharing externally"), rows whose panels are nested
(collapsed) or follow them (expanded), datasource references as strings, objects, ``${DS_...}``
inputs or ``$datasource`` variables, and the ``{"dashboard": ..., "meta": ...}`` API envelope.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab_stack.errors import ConfigError
from lab_stack.provisioning import LAB_DATASOURCES, Datasource

__all__ = [
    "NO_QUERY_PANELS",
    "PANEL_TYPES",
    "Dashboard",
    "DashboardError",
    "DashboardProblem",
    "Panel",
    "Target",
    "Threshold",
    "Variable",
    "check",
    "load",
    "resolve_datasource",
    "validate",
]

#: Panel types Grafana 10.2 ships (core panels).
PANEL_TYPES = frozenset(
    {
        "alertlist",
        "annolist",
        "barchart",
        "bargauge",
        "candlestick",
        "canvas",
        "dashlist",
        "datagrid",
        "flamegraph",
        "gauge",
        "geomap",
        "gettingstarted",
        "graph",
        "heatmap",
        "histogram",
        "logs",
        "news",
        "nodeGraph",
        "piechart",
        "row",
        "stat",
        "state-timeline",
        "status-history",
        "table",
        "table-old",
        "text",
        "timeseries",
        "traces",
        "trend",
        "welcome",
        "xychart",
    }
)
#: Panel types that show no query results (no targets needed).
NO_QUERY_PANELS = frozenset(
    {"row", "text", "dashlist", "news", "alertlist", "annolist", "welcome", "gettingstarted"}
)
#: Datasource types whose queries the lab can run.
QUERYABLE_TYPES = frozenset({"prometheus", "loki", "tempo"})

_MIXED = {"-- Mixed --", "mixed"}
_GRAFANA = {"-- Grafana --", "grafana"}
_VAR = re.compile(r"^\$\{?([A-Za-z0-9_]+)(?::[a-z]+)?\}?$")


class DashboardError(ConfigError):
    """A dashboard has problems; ``problems`` lists each one (panel, field, message)."""

    def __init__(self, message: str, problems: Sequence[DashboardProblem] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


@dataclass(frozen=True)
class DashboardProblem:
    """One thing wrong with a dashboard: which panel (``""`` for the dashboard), field, what."""

    panel: str
    field: str
    message: str

    def __str__(self) -> str:
        where = f"panel {self.panel}" if self.panel else "dashboard"
        return (
            f"{where}, {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


@dataclass(frozen=True)
class Threshold:
    """One threshold step: from ``value`` upwards (``None`` = the base step) the colour is ``color``."""

    color: str
    value: float | None


@dataclass(frozen=True)
class Target:
    """One query of a panel, with the datasource reference as written."""

    ref_id: str
    datasource: Any
    expr: str
    legend: str = ""
    instant: bool = False
    hide: bool = False
    format: str = ""
    query_type: str = ""
    limit: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Panel:
    """A panel (rows included), flattened out of its row; ``label`` names it in messages."""

    id: int | None
    type: str
    title: str
    grid: tuple[int, int, int, int]  # x, y, w, h
    datasource: Any
    targets: tuple[Target, ...]
    row: str = ""
    nested: bool = False  # inside a collapsed row's "panels"
    unit: str = ""
    decimals: int | None = None
    min: float | None = None
    max: float | None = None
    thresholds: tuple[Threshold, ...] = ()
    reducer: str = "lastNotNull"
    interval: str = ""
    max_data_points: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``'Latency' (id 3)``: how messages name the panel."""
        title = repr(self.title) if self.title else "(untitled)"
        return f"{title} (id {self.id})" if self.id is not None else title

    @property
    def queries(self) -> bool:
        """True for panels that show query results."""
        return self.type not in NO_QUERY_PANELS


@dataclass(frozen=True)
class Variable:
    """A template variable (``templating.list`` entry)."""

    name: str
    type: str
    query: str
    current: tuple[str, ...]
    options: tuple[str, ...]
    include_all: bool
    all_value: str
    multi: bool
    datasource: Any
    regex: str = ""


@dataclass(frozen=True)
class Dashboard:
    """A loaded dashboard: flattened panels, variables, import inputs and the JSON itself."""

    uid: str
    title: str
    schema_version: int | None
    panels: tuple[Panel, ...]
    variables: tuple[Variable, ...]
    inputs: Mapping[str, str]  # DS_PROMETHEUS -> prometheus (plugin type)
    time: tuple[str, str]
    raw: Mapping[str, Any]
    source: str = ""

    def panel(self, title: str) -> Panel:
        """The panel titled ``title``.

        Raises:
            KeyError: no panel has that title (the message lists the titles).
        """
        for panel in self.panels:
            if panel.title == title:
                return panel
        raise KeyError(f"no panel titled {title!r}; panels: {[p.title for p in self.panels]}")


# --- loading ----------------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _grid(raw: Any) -> tuple[int, int, int, int]:
    if not isinstance(raw, Mapping):
        return (0, 0, 0, 0)
    values = []
    for key in ("x", "y", "w", "h"):
        value = raw.get(key)
        values.append(value if isinstance(value, int) and not isinstance(value, bool) else -1)
    return (values[0], values[1], values[2], values[3])


def _target(raw: Mapping[str, Any]) -> Target:
    expr = raw.get("expr")
    if expr is None:
        expr = raw.get("query")
    limit = raw.get("limit")
    return Target(
        ref_id=str(raw.get("refId") or ""),
        datasource=raw.get("datasource"),
        expr=expr if isinstance(expr, str) else "",
        legend=str(raw.get("legendFormat") or ""),
        instant=bool(raw.get("instant")) and not bool(raw.get("range")),
        hide=bool(raw.get("hide")),
        format=str(raw.get("format") or ""),
        query_type=str(raw.get("queryType") or ""),
        limit=limit if isinstance(limit, int) else None,
        raw=raw,
    )


def _panel(raw: Mapping[str, Any], row: str, nested: bool) -> Panel:
    defaults = (raw.get("fieldConfig") or {}).get("defaults") or {}
    steps = (defaults.get("thresholds") or {}).get("steps") or []
    thresholds = tuple(
        Threshold(str(s.get("color") or "green"), _number(s.get("value")))
        for s in steps
        if isinstance(s, Mapping)
    )
    calcs = ((raw.get("options") or {}).get("reduceOptions") or {}).get("calcs") or ["lastNotNull"]
    targets = raw.get("targets") or []
    panel_id = raw.get("id")
    decimals = defaults.get("decimals")
    max_points = raw.get("maxDataPoints")
    return Panel(
        id=panel_id if isinstance(panel_id, int) and not isinstance(panel_id, bool) else None,
        type=str(raw.get("type") or ""),
        title=str(raw.get("title") or ""),
        grid=_grid(raw.get("gridPos")),
        datasource=raw.get("datasource"),
        targets=tuple(_target(t) for t in targets if isinstance(t, Mapping)),
        row=row,
        nested=nested,
        unit=str(defaults.get("unit") or ""),
        decimals=decimals if isinstance(decimals, int) else None,
        min=_number(defaults.get("min")),
        max=_number(defaults.get("max")),
        thresholds=thresholds,
        reducer=str(calcs[0]) if isinstance(calcs, list) and calcs else "lastNotNull",
        interval=str(raw.get("interval") or ""),
        max_data_points=max_points if isinstance(max_points, int) else None,
        raw=raw,
    )


def _flatten(items: Sequence[Any]) -> list[tuple[Mapping[str, Any], str, bool]]:
    """Panels with the title of the row they sit in, and whether they are nested in it."""
    out: list[tuple[Mapping[str, Any], str, bool]] = []
    row = ""
    for item in items:
        if not isinstance(item, Mapping):
            continue
        if item.get("type") == "row":
            row = str(item.get("title") or "")
            out.append((item, "", False))
            for child in item.get("panels") or []:
                if isinstance(child, Mapping):
                    out.append((child, row, True))
            continue
        out.append((item, row, False))
    return out


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return (str(value),)


def _variable(raw: Mapping[str, Any]) -> Variable:
    query = raw.get("query")
    if isinstance(query, Mapping):
        query = query.get("query", "")
    current = raw.get("current") or {}
    options = raw.get("options") or []
    return Variable(
        name=str(raw.get("name") or ""),
        type=str(raw.get("type") or ""),
        query=str(query or ""),
        current=_strings(current.get("value")) if isinstance(current, Mapping) else (),
        options=tuple(
            str(o.get("value"))
            for o in options
            if isinstance(o, Mapping) and o.get("value") not in (None, "$__all")
        ),
        include_all=bool(raw.get("includeAll")),
        all_value=str(raw.get("allValue") or ""),
        multi=bool(raw.get("multi")),
        datasource=raw.get("datasource"),
        regex=str(raw.get("regex") or ""),
    )


def load(source: str | Path | Mapping[str, Any]) -> Dashboard:
    """Load a dashboard from a JSON file, JSON text or a parsed document.

    Accepts Grafana's export shapes, the API envelope ``{"dashboard": ..., "meta": ...}`` and
    shared exports with ``__inputs``. Structure is not checked here; see :func:`validate`.

    Raises:
        DashboardError: the file is missing, is not JSON, or is not a JSON object.
    """
    name = "<dashboard>"
    if isinstance(source, Mapping):
        document: Any = source
    else:
        text: str
        if isinstance(source, Path) or (
            isinstance(source, str) and not source.lstrip().startswith("{")
        ):
            path = Path(source)
            name = str(path)
            try:
                text = path.read_text()
            except FileNotFoundError:
                raise DashboardError(
                    f"the dashboard file {path} does not exist. Hint: export the dashboard from "
                    "Grafana (Share → Export → Save to file) or check the path."
                ) from None
        else:
            text = str(source)
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DashboardError(
                f"{name} is not valid JSON: {exc}. Hint: a trailing comma or a missing quote is "
                "the usual cause; `python -m json.tool FILE` shows where."
            ) from exc
    if not isinstance(document, Mapping):
        raise DashboardError(f"{name} is not a JSON object. Hint: a dashboard is {{...}}.")
    if isinstance(document.get("dashboard"), Mapping) and "panels" not in document:
        document = document["dashboard"]
    inputs = {
        str(i.get("name")): str(i.get("pluginId") or "")
        for i in document.get("__inputs") or []
        if isinstance(i, Mapping) and i.get("type") == "datasource"
    }
    templating = document.get("templating") or {}
    variables = (
        tuple(_variable(v) for v in (templating.get("list") or []) if isinstance(v, Mapping))
        if isinstance(templating, Mapping)
        else ()
    )
    time_range = document.get("time") or {}
    schema = document.get("schemaVersion")
    panels_raw = document.get("panels")
    panels = tuple(
        _panel(raw, row, nested)
        for raw, row, nested in _flatten(panels_raw if isinstance(panels_raw, list) else [])
    )
    return Dashboard(
        uid=str(document.get("uid") or ""),
        title=str(document.get("title") or ""),
        schema_version=schema if isinstance(schema, int) else None,
        panels=panels,
        variables=variables,
        inputs=inputs,
        time=(str(time_range.get("from") or "now-6h"), str(time_range.get("to") or "now"))
        if isinstance(time_range, Mapping)
        else ("now-6h", "now"),
        raw=document,
        source=name,
    )


# --- datasource references --------------------------------------------------------------------------


def _of_type(datasources: Sequence[Datasource], kind: str) -> Datasource | None:
    matching = [d for d in datasources if d.type == kind]
    for candidate in matching:
        if candidate.is_default:
            return candidate
    return matching[0] if matching else None


def _default(datasources: Sequence[Datasource]) -> Datasource | None:
    for candidate in datasources:
        if candidate.is_default:
            return candidate
    return _of_type(datasources, "prometheus")


def _by_key(datasources: Sequence[Datasource], key: str) -> Datasource | None:
    for candidate in datasources:
        if candidate.uid == key:
            return candidate
    for candidate in datasources:
        if candidate.name == key:
            return candidate
    return None


def resolve_datasource(
    ref: Any,
    dashboard: Dashboard,
    datasources: Sequence[Datasource] = LAB_DATASOURCES,
) -> tuple[Datasource | None, str]:
    """The provisioned datasource a reference points at, or ``(None, why)``.

    ``ref`` is a target's or panel's ``datasource`` as written: ``None`` (the default), a name or
    uid string, ``{"type", "uid"}``, ``${DS_X}`` (an ``__inputs`` entry) or ``$var`` (a
    datasource variable).
    """
    if ref is None:
        found = _default(datasources)
        return (found, "") if found else (None, "no default datasource is provisioned")
    kind = ""
    key: Any = ref
    if isinstance(ref, Mapping):
        kind = str(ref.get("type") or "")
        key = ref.get("uid")
        if key is None:
            found = _of_type(datasources, kind) if kind else _default(datasources)
            return (
                (found, "")
                if found
                else (None, f"no {kind or 'default'} datasource is provisioned")
            )
    key = str(key)
    if key in _MIXED or key in _GRAFANA:
        return None, f"{key!r} is Grafana's built-in datasource, which the lab cannot query"
    match = _VAR.match(key)
    if match:
        name = match.group(1)
        if name in dashboard.inputs:
            plugin = dashboard.inputs[name] or kind
            found = _of_type(datasources, plugin)
            return (
                (found, "")
                if found
                else (
                    None,
                    f"input ${{{name}}} needs a {plugin} datasource, and none is provisioned",
                )
            )
        for variable in dashboard.variables:
            if variable.name == name and variable.type == "datasource":
                for value in variable.current:
                    found = _by_key(datasources, value)
                    if found and found.type == variable.query:
                        return found, ""
                found = _of_type(datasources, variable.query)
                return (
                    (found, "")
                    if found
                    else (
                        None,
                        f"variable ${name} needs a {variable.query} "
                        "datasource, and none is provisioned",
                    )
                )
        return None, f"{key!r} is neither an __inputs entry nor a datasource variable"
    found = _by_key(datasources, key)
    if found is None:
        known = ", ".join(f"{d.uid} ({d.type})" for d in datasources) or "none"
        return None, f"uid {key!r} is not a provisioned datasource (provisioned: {known})"
    if kind and kind != found.type and kind != "datasource":
        return (
            None,
            f"uid {key!r} is a {found.type} datasource, but the reference says type {kind!r}",
        )
    return found, ""


def target_datasource(
    target: Target, panel: Panel, dashboard: Dashboard, datasources: Sequence[Datasource]
) -> tuple[Datasource | None, str]:
    """The datasource a target runs on: its own reference, else its panel's."""
    ref = target.datasource
    if ref is None or (isinstance(ref, Mapping) and not ref.get("uid") and not ref.get("type")):
        ref = panel.datasource
    if isinstance(ref, Mapping) and str(ref.get("uid")) in _MIXED:
        ref = None
    return resolve_datasource(ref, dashboard, datasources)


# --- validation --------------------------------------------------------------------------------------


def validate(
    dashboard: Dashboard,
    *,
    datasources: Sequence[Datasource] = LAB_DATASOURCES,
    require_uid: bool = True,
) -> list[DashboardProblem]:
    """Every structural problem of ``dashboard``; each names the panel and the field.

    Checks the required keys, known panel types, grid positions (inside the 24 columns, no
    overlap), unique panel ids and refIds, threshold steps, and that every target's datasource
    resolves to a provisioned one of the right type with a query to run.
    """
    problems: list[DashboardProblem] = []
    raw = dashboard.raw

    def add(panel: Panel | None, where: str, message: str) -> None:
        problems.append(DashboardProblem(panel.label if panel else "", where, message))

    if not dashboard.title:
        add(None, "title", "is missing or empty. Hint: give the dashboard a title.")
    if require_uid:
        if not dashboard.uid:
            add(
                None,
                "uid",
                'is missing. Hint: set a fixed uid (e.g. "ml-service") so that '
                "provisioning and graders find the dashboard.",
            )
        elif not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard.uid):
            add(None, "uid", f"{dashboard.uid!r} must be 1-40 letters, digits, '-' or '_'.")
    if not isinstance(raw.get("panels"), list):
        add(
            None,
            "panels",
            'is missing or not a list. Hint: rows and panels go in "panels"; the '
            'old "rows" layout (before Grafana 5) is not read.',
        )
    elif not dashboard.panels:
        add(None, "panels", "is empty.")
    if "schemaVersion" in raw and dashboard.schema_version is None:
        add(None, "schemaVersion", f"{raw.get('schemaVersion')!r} must be a whole number.")
    templating = raw.get("templating")
    if templating is not None and not (
        isinstance(templating, Mapping) and isinstance(templating.get("list", []), list)
    ):
        add(None, "templating.list", "must be a list of variables.")
    seen_ids: dict[int, Panel] = {}
    placed: list[Panel] = []
    for panel in dashboard.panels:
        if not panel.type:
            add(panel, "type", 'is missing. Hint: e.g. "timeseries", "stat" or "gauge".')
        elif panel.type not in PANEL_TYPES:
            hint = (
                " Grafana 10 replaced singlestat with stat." if panel.type == "singlestat" else ""
            )
            add(
                panel,
                "type",
                f"{panel.type!r} is not a Grafana 10.2 panel type.{hint} Hint: use "
                "timeseries, stat, gauge, bargauge, table, logs or traces.",
            )
        if not panel.title and panel.type not in ("row", "text"):
            add(panel, "title", "is empty. Hint: a title says what the panel answers.")
        if panel.id is not None:
            if panel.id in seen_ids:
                add(panel, "id", f"{panel.id} is also the id of panel {seen_ids[panel.id].label}.")
            seen_ids[panel.id] = panel
        elif "id" in panel.raw or panel.type != "row":
            add(
                panel,
                "id",
                f"{panel.raw.get('id')!r} must be a whole number, unique in the dashboard.",
            )
        x, _y, w, h = panel.grid
        if "gridPos" not in panel.raw:
            add(panel, "gridPos", 'is missing. Hint: {"x": 0, "y": 0, "w": 12, "h": 8}.')
        elif min(panel.grid) < 0:
            add(panel, "gridPos", f"{panel.raw.get('gridPos')!r} needs whole numbers x, y, w, h.")
        else:
            if not 1 <= w <= 24 or x + w > 24:
                add(
                    panel,
                    "gridPos",
                    f"x={x}, w={w} leaves the 24-column grid (x + w must be ≤ 24).",
                )
            if h < 1:
                add(panel, "gridPos.h", f"{h} must be at least 1.")
            if panel.type == "row" and panel.raw.get("panels") and not panel.raw.get("collapsed"):
                add(
                    panel,
                    "panels",
                    "an expanded row keeps its panels after it, not inside it. "
                    'Hint: set "collapsed": true or move the panels out.',
                )
            if not panel.nested:
                for other in placed:
                    if _overlap(panel.grid, other.grid):
                        add(
                            panel,
                            "gridPos",
                            f"{panel.grid} overlaps panel {other.label} at "
                            f"{other.grid} (x, y, w, h).",
                        )
                        break
                placed.append(panel)
        _check_thresholds(panel, add)
        if panel.queries and panel.type:
            _check_targets(panel, dashboard, datasources, add)
    return problems


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


def _check_thresholds(panel: Panel, add: Any) -> None:
    defaults = (panel.raw.get("fieldConfig") or {}).get("defaults") or {}
    thresholds = defaults.get("thresholds")
    if thresholds is None:
        return
    steps = thresholds.get("steps") if isinstance(thresholds, Mapping) else None
    if not isinstance(steps, list):
        add(panel, "fieldConfig.defaults.thresholds.steps", "must be a list of {color, value}.")
        return
    if thresholds.get("mode", "absolute") not in ("absolute", "percentage"):
        add(
            panel,
            "fieldConfig.defaults.thresholds.mode",
            f"{thresholds.get('mode')!r} must be absolute or percentage.",
        )
    previous: float | None = None
    for index, step in enumerate(steps):
        where = f"fieldConfig.defaults.thresholds.steps[{index}]"
        if not isinstance(step, Mapping) or not step.get("color"):
            add(panel, where, "needs a color.")
            continue
        value = step.get("value")
        if value is None:
            if index != 0:
                add(panel, f"{where}.value", "is null; only the first (base) step may be null.")
            continue
        number = _number(value)
        if number is None:
            add(panel, f"{where}.value", f"{value!r} must be a number.")
        elif previous is not None and number < previous:
            add(
                panel,
                f"{where}.value",
                f"{number:g} is below the step before it ({previous:g}); steps go upwards.",
            )
        else:
            previous = number


def _check_targets(
    panel: Panel, dashboard: Dashboard, datasources: Sequence[Datasource], add: Any
) -> None:
    if "targets" in panel.raw and not isinstance(panel.raw["targets"], list):
        add(panel, "targets", "must be a list of queries.")
        return
    if not panel.targets:
        add(panel, "targets", "is empty: the panel queries nothing. Hint: add a query (expr).")
        return
    refs: set[str] = set()
    for index, target in enumerate(panel.targets):
        where = f"targets[{index}]"
        if not target.ref_id:
            add(panel, f"{where}.refId", 'is missing (e.g. "A").')
        elif target.ref_id in refs:
            add(panel, f"{where}.refId", f"{target.ref_id!r} is used twice in the panel.")
        refs.add(target.ref_id)
        source, why = target_datasource(target, panel, dashboard, datasources)
        if source is None:
            add(
                panel,
                f"{where}.datasource",
                f"{why}. Hint: reference a provisioned datasource, "
                'e.g. {"type": "prometheus", "uid": "prometheus"}.',
            )
            continue
        if source.type not in QUERYABLE_TYPES:
            add(
                panel,
                f"{where}.datasource",
                f"{source.uid!r} is a {source.type} datasource; "
                "panels must query Prometheus, Loki or Tempo.",
            )
            continue
        field_name = "query" if source.type == "tempo" else "expr"
        if not target.expr.strip():
            add(
                panel,
                f"{where}.{field_name}",
                f"is empty: there is no {'TraceQL' if source.type == 'tempo' else 'query'} to run.",
            )


def check(
    source: str | Path | Mapping[str, Any] | Dashboard,
    *,
    datasources: Sequence[Datasource] = LAB_DATASOURCES,
    require_uid: bool = True,
) -> Dashboard:
    """Load and validate a dashboard; return it when it has no problems.

    Raises:
        DashboardError: listing every problem, each naming the panel and field.
    """
    dashboard = source if isinstance(source, Dashboard) else load(source)
    problems = validate(dashboard, datasources=datasources, require_uid=require_uid)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise DashboardError(
            f"the dashboard {dashboard.title or dashboard.source!r} has {len(problems)} problem(s):\n"
            f"{lines}\nHint: fix each field named above (Grafana's panel editor → JSON shows it).",
            problems,
        )
    return dashboard
