"""Grafana dashboards graded and previewed without Grafana.

* :func:`load` reads dashboard JSON as Grafana 10.2 exports it; :func:`validate` / :func:`check`
  find structural problems, each naming the panel and the field.
* :func:`run` runs every panel's queries (PromQL → Prometheus, LogQL → Loki, TraceQL → Tempo) with
  Grafana's macros and template variables substituted, and says per panel whether it got data.
* :func:`preview` draws the dashboard laid out by ``gridPos`` and writes a PNG.

Example:
    >>> import lab_stack
    >>> from lab_stack import dashboards
    >>> board = dashboards.check("dashboards/ml_service.json")        # doctest: +SKIP
    >>> dashboards.run(board, stack=lab_stack.connect()).problems()   # doctest: +SKIP
    []
    >>> dashboards.preview(board, stack=lab_stack.connect())          # doctest: +SKIP
"""

from __future__ import annotations

from lab_stack.dashboards.model import (
    NO_QUERY_PANELS,
    PANEL_TYPES,
    Dashboard,
    DashboardError,
    DashboardProblem,
    Panel,
    Target,
    Threshold,
    Variable,
    check,
    load,
    resolve_datasource,
    validate,
)
from lab_stack.dashboards.preview import Preview, format_value, layout, preview, threshold_color
from lab_stack.dashboards.query import (
    DashboardRun,
    PanelResult,
    Series,
    TargetResult,
    Window,
    interpolate,
    run,
)

__all__ = [
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
