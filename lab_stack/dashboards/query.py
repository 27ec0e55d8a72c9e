"""Run every query of a dashboard against the lab's real backends, as Grafana would.

Grafana's macros are substituted first (``$__rate_interval``, ``$__interval``, ``$__range``,
``$__auto``, ``$__from``/``$__to`` and their ``_ms``/``_s`` forms) together with the template
variables; then PromQL goes to Prometheus (range or instant queries), LogQL to Loki, TraceQL to
Tempo's search. The outcome is per panel: did each query run, and did the panel get data?
"""

from __future__ import annotations

import math
import re
import time as _time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from lab_stack.dashboards.model import Dashboard, Panel, Target, Variable, load, target_datasource
from lab_stack.errors import LabError
from lab_stack.provisioning import LAB_DATASOURCES, Datasource

if TYPE_CHECKING:
    from pathlib import Path

    from lab_stack.stack import Stack

__all__ = [
    "DashboardRun",
    "PanelResult",
    "Series",
    "TargetResult",
    "Window",
    "format_duration",
    "interpolate",
    "parse_duration",
    "run",
]

_NICE_STEPS = (
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1,
    2,
    5,
    10,
    15,
    20,
    30,
    60,
    120,
    300,
    600,
    900,
    1200,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    86400,
)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
    "y": 31536000.0,
}


def parse_duration(text: str, *, default: float = 15.0) -> float:
    """Seconds in a Prometheus-style duration (``1m30s``, ``500ms``); ``default`` when empty."""
    text = text.strip().lstrip(">")
    if not text:
        return default
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        try:
            return float(text)
        except ValueError:
            return default
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def format_duration(seconds: float) -> str:
    """A Prometheus duration for ``seconds`` (``4s``, ``1m``, ``1500ms``)."""
    milliseconds = round(seconds * 1000)
    if milliseconds % 1000:
        return f"{milliseconds}ms"
    whole = milliseconds // 1000
    if whole and whole % 3600 == 0:
        return f"{whole // 3600}h"
    if whole and whole % 60 == 0:
        return f"{whole // 60}m"
    return f"{whole}s"


@dataclass(frozen=True)
class Window:
    """The time range of a run: unix seconds ``start``..``end`` and the range-query ``step``."""

    start: float
    end: float
    step: float
    scrape_interval: float

    @property
    def range(self) -> float:
        """Length of the window in seconds."""
        return self.end - self.start

    @property
    def rate_interval(self) -> float:
        """Grafana's ``$__rate_interval``: max(step + scrape interval, 4 × scrape interval)."""
        return max(self.step + self.scrape_interval, 4 * self.scrape_interval)


@dataclass(frozen=True)
class Series:
    """One line of data: its legend name, labels and ``(unix seconds, value)`` points."""

    name: str
    labels: Mapping[str, str]
    points: tuple[tuple[float, float], ...]

    def reduce(self, how: str = "lastNotNull") -> float | None:
        """One number the way a stat panel computes it (``lastNotNull``, ``mean``, ``max``, ...)."""
        values = [v for _, v in self.points if not math.isnan(v)]
        if not values:
            return None
        reducers: dict[str, Callable[[], float]] = {
            "lastNotNull": lambda: values[-1],
            "last": lambda: values[-1],
            "firstNotNull": lambda: values[0],
            "first": lambda: values[0],
            "mean": lambda: sum(values) / len(values),
            "max": lambda: max(values),
            "min": lambda: min(values),
            "sum": lambda: sum(values),
            "count": lambda: float(len(values)),
            "range": lambda: max(values) - min(values),
            "delta": lambda: values[-1] - values[0],
        }
        return float(reducers.get(how, reducers["lastNotNull"])())


@dataclass(frozen=True)
class TargetResult:
    """What one query returned: the query as sent, an error, or series / log lines / traces."""

    target: Target
    datasource: Datasource | None
    query: str
    error: str = ""
    series: tuple[Series, ...] = ()
    lines: tuple[tuple[float, str, Mapping[str, str]], ...] = ()
    rows: tuple[Mapping[str, Any], ...] = ()

    @property
    def ok(self) -> bool:
        """True when the backend accepted the query."""
        return not self.error

    @property
    def has_data(self) -> bool:
        """True when the query returned at least one point, line or trace."""
        return any(s.points for s in self.series) or bool(self.lines) or bool(self.rows)


@dataclass(frozen=True)
class PanelResult:
    """The results of one panel's queries."""

    panel: Panel
    targets: tuple[TargetResult, ...]

    @property
    def has_data(self) -> bool:
        """True when any visible query of the panel returned data (what Grafana draws)."""
        return any(t.has_data for t in self.targets if not t.target.hide)

    @property
    def errors(self) -> list[str]:
        """Each failed query as ``refId: message``."""
        return [f"{t.target.ref_id}: {t.error}" for t in self.targets if t.error]


@dataclass(frozen=True)
class DashboardRun:
    """Every panel's results over one window."""

    dashboard: Dashboard
    window: Window
    panels: tuple[PanelResult, ...]
    variables: Mapping[str, str] = field(default_factory=dict)

    def result(self, title: str) -> PanelResult:
        """The results of the panel titled ``title``.

        Raises:
            KeyError: no query panel has that title.
        """
        for result in self.panels:
            if result.panel.title == title:
                return result
        raise KeyError(
            f"no query panel titled {title!r}; panels: {[r.panel.title for r in self.panels]}"
        )

    def query_problems(self) -> list[str]:
        """One message per query a backend rejected, naming the panel and refId."""
        problems = []
        for result in self.panels:
            for target in result.targets:
                if target.error:
                    problems.append(
                        f"panel {result.panel.label}, query {target.target.ref_id} "
                        f"({target.query!r}): {target.error}"
                    )
        return problems

    def empty_panels(self) -> list[str]:
        """One message per query panel that would show "No data" over the window."""
        problems = []
        for result in self.panels:
            if result.has_data:
                continue
            failed = result.errors
            why = (
                f"its queries failed ({'; '.join(failed)})"
                if failed
                else (
                    "its queries ran but returned no data over the last "
                    f"{format_duration(self.window.range)}: "
                    + ", ".join(repr(t.query) for t in result.targets if not t.target.hide)
                )
            )
            problems.append(
                f"panel {result.panel.label} shows no data: {why}. Hint: check the metric and "
                "label names in Prometheus (Explore or /api/v1/series), and that traffic is flowing."
            )
        return problems

    def problems(self) -> list[str]:
        """Rejected queries first, then panels without data (empty when every panel has data)."""
        rejected = self.query_problems()
        seen = {r.split(",")[0] for r in rejected}
        return rejected + [p for p in self.empty_panels() if p.split(" shows")[0] not in seen]


# --- macros and variables ---------------------------------------------------------------------------


def _nice(seconds: float) -> float:
    for step in _NICE_STEPS:
        if seconds <= step:
            return float(step)
    return float(math.ceil(seconds / 86400) * 86400)


def _panel_window(panel: Panel, start: float, end: float, scrape: float) -> Window:
    points = panel.max_data_points or max(100, round(panel.grid[2] / 24 * 1200))
    minimum = (
        max(parse_duration(panel.interval, default=scrape), scrape) if panel.interval else scrape
    )
    step = max(_nice((end - start) / points), minimum)
    return Window(start, end, step, scrape)


def _regex_escape(value: str) -> str:
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\1", value)


def _format_values(values: Sequence[str], fmt: str, variable: Variable | None) -> str:
    if fmt in ("raw", "text"):
        return ",".join(values)
    if fmt == "csv":
        return ",".join(values)
    if fmt == "pipe":
        return "|".join(values)
    if fmt == "regex" or (variable is not None and (variable.multi or variable.include_all)):
        if len(values) == 1:
            return values[0] if fmt != "regex" else _regex_escape(values[0])
        return "(" + "|".join(_regex_escape(v) for v in values) + ")"
    return values[0] if values else ""


_VARIABLE_REF = re.compile(
    r"\$\{(?P<braced>[A-Za-z0-9_.]+)(?::(?P<fmt>[a-z]+))?\}|\[\[(?P<old>[A-Za-z0-9_]+)\]\]"
    r"|\$(?P<plain>[A-Za-z0-9_]+)"
)


def interpolate(
    text: str, values: Mapping[str, Sequence[str]], variables: Sequence[Variable] = ()
) -> str:
    """``text`` with ``$name``, ``${name}``, ``${name:fmt}`` and ``[[name]]`` replaced.

    Unknown names are left as written (so PromQL such as ``$1`` in label_replace survives).
    """
    by_name = {v.name: v for v in variables}

    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("old") or match.group("plain")
        if name not in values:
            return match.group(0)
        chosen = values[name]
        if chosen == ("$__all",):
            variable = by_name.get(name)
            return variable.all_value if variable and variable.all_value else ".*"
        return _format_values(list(chosen), match.group("fmt") or "", by_name.get(name))

    return _VARIABLE_REF.sub(replace, text)


def _macros(window: Window) -> dict[str, tuple[str]]:
    range_s = max(1, round(window.range))
    return {
        "__rate_interval": (format_duration(window.rate_interval),),
        "__interval": (format_duration(window.step),),
        "__interval_ms": (str(round(window.step * 1000)),),
        "__auto": (format_duration(window.step),),
        "__range": (f"{range_s}s",),
        "__range_s": (str(range_s),),
        "__range_ms": (str(range_s * 1000),),
        "__from": (str(round(window.start * 1000)),),
        "__to": (str(round(window.end * 1000)),),
        "__dashboard": ("lab",),
    }


# --- backends -----------------------------------------------------------------------------------------


class _Backends:
    """Clients per datasource, routed to the stack's component of that kind."""

    def __init__(self, urls: Mapping[str, str]) -> None:
        self.urls = dict(urls)
        self._clients: dict[str, Any] = {}

    def url_for(self, source: Datasource) -> str:
        parts = urlsplit(source.url) if source.url else None
        if parts is not None and parts.port is not None:
            for _name, url in self.urls.items():
                mine = urlsplit(url)
                if mine.port == parts.port and mine.hostname == parts.hostname:
                    return url
        if parts is not None and parts.hostname in self.urls:
            return self.urls[str(parts.hostname)]
        if source.type in self.urls:
            return self.urls[source.type]
        raise LabError(
            f"the lab stack has no {source.type} backend for datasource {source.uid!r}. "
            "Hint: start it with `lab up`."
        )

    def client(self, source: Datasource) -> Any:
        from lab_stack.clients import LokiClient, PrometheusClient, TempoClient

        url = self.url_for(source)
        key = f"{source.type} {url}"
        if key not in self._clients:
            kind = {"prometheus": PrometheusClient, "loki": LokiClient, "tempo": TempoClient}
            self._clients[key] = kind[source.type](url)
        return self._clients[key]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


def _legend(fmt: str, labels: Mapping[str, str], query: str) -> str:
    if fmt and fmt != "__auto":
        return re.sub(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)
    name = labels.get("__name__", "")
    rest = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    if not name and not rest:
        return query
    return f"{name}{{{rest}}}" if rest else name


def _matrix(data: Mapping[str, Any], legend: str, query: str) -> tuple[Series, ...]:
    kind = data.get("resultType")
    result = data.get("result") or []
    out = []
    if kind == "matrix":
        for item in result:
            labels = dict(item.get("metric") or {})
            points = tuple((float(t), float(v)) for t, v in item.get("values") or [])
            out.append(Series(_legend(legend, labels, query), labels, points))
    elif kind == "vector":
        for item in result:
            labels = dict(item.get("metric") or {})
            t, v = item.get("value")
            out.append(Series(_legend(legend, labels, query), labels, ((float(t), float(v)),)))
    elif kind == "scalar":
        t, v = result
        out.append(Series(legend or query, {}, ((float(t), float(v)),)))
    return tuple(out)


def _run_target(
    backends: _Backends,
    source: Datasource,
    target: Target,
    query: str,
    window: Window,
) -> TargetResult:
    try:
        client = backends.client(source)
        if source.type == "prometheus":
            if target.instant:
                data = client.query(query, time=window.end)
            else:
                data = client.query_range(
                    query, start=window.start, end=window.end, step=window.step
                )
            return TargetResult(target, source, query, series=_matrix(data, target.legend, query))
        if source.type == "loki":
            if target.instant or target.query_type == "instant":
                data = client.query(query, time=window.end, limit=target.limit or 100)
            else:
                data = client.query_range(
                    query,
                    start=window.start,
                    end=window.end,
                    step=window.step,
                    limit=target.limit or 100,
                )
            if data.get("resultType") == "streams":
                lines = []
                for stream in data.get("result") or []:
                    labels = dict(stream.get("stream") or {})
                    for value in stream.get("values") or []:
                        lines.append((int(value[0]) / 1e9, str(value[1]), labels))
                lines.sort(key=lambda item: item[0], reverse=True)
                return TargetResult(target, source, query, lines=tuple(lines))
            return TargetResult(target, source, query, series=_matrix(data, target.legend, query))
        data = client.search(
            q=query, start=int(window.start), end=math.ceil(window.end), limit=target.limit or 20
        )
        rows = tuple(
            {
                "traceID": t.get("traceID", ""),
                "service": t.get("rootServiceName", ""),
                "name": t.get("rootTraceName", ""),
                "start": int(t.get("startTimeUnixNano", 0) or 0) / 1e9,
                "duration_ms": t.get("durationMs", 0),
            }
            for t in data.get("traces") or []
        )
        return TargetResult(target, source, query, rows=rows)
    except LabError as exc:
        return TargetResult(target, source, query, error=str(exc))


# --- variables ------------------------------------------------------------------------------------------

_LABEL_VALUES = re.compile(
    r"^\s*label_values\(\s*(?:(?P<match>.+?)\s*,\s*)?(?P<label>[A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$"
)


def _variable_values(
    dashboard: Dashboard,
    backends: _Backends,
    datasources: Sequence[Datasource],
    window: Window,
    given: Mapping[str, str | Sequence[str]],
) -> dict[str, tuple[str, ...]]:
    values: dict[str, tuple[str, ...]] = {
        k: ((v,) if isinstance(v, str) else tuple(v)) for k, v in given.items()
    }
    for variable in dashboard.variables:
        if variable.name in values or not variable.name:
            continue
        if variable.type == "datasource":
            continue  # resolved as datasource references, not as text
        if variable.type in ("constant", "textbox", "interval", "custom"):
            options = variable.options or tuple(
                o.strip() for o in variable.query.split(",") if o.strip()
            )
            chosen = variable.current or options[:1]
            if chosen and chosen[0] in ("$__all", "All"):
                chosen = ("$__all",) if variable.all_value else options
            values[variable.name] = chosen
            continue
        if variable.type != "query":
            values[variable.name] = variable.current
            continue
        found = _query_variable(variable, dashboard, backends, datasources, window, values)
        current = tuple(c for c in variable.current if c not in ("$__all", "All"))
        if (variable.current and variable.current[0] in ("$__all", "All")) or not current:
            chosen = (
                ("$__all",)
                if variable.all_value
                else (found if variable.include_all or variable.multi else found[:1])
            )
        else:
            chosen = tuple(c for c in current if c in found) or found[:1] or current
        values[variable.name] = chosen
    return values


def _query_variable(
    variable: Variable,
    dashboard: Dashboard,
    backends: _Backends,
    datasources: Sequence[Datasource],
    window: Window,
    values: Mapping[str, Sequence[str]],
) -> tuple[str, ...]:
    from lab_stack.dashboards.model import resolve_datasource

    source, _ = resolve_datasource(variable.datasource, dashboard, datasources)
    match = _LABEL_VALUES.match(interpolate(variable.query, values, dashboard.variables))
    if source is None or source.type != "prometheus" or match is None:
        return variable.options
    try:
        client = backends.client(source)
        selector = match.group("match")
        found = client.label_values(match.group("label"), match=[selector] if selector else ())
    except LabError:
        return variable.options
    if variable.regex:
        pattern = re.compile(variable.regex.strip("/"))
        found = [v for v in found if pattern.search(v)]
    return tuple(sorted(str(v) for v in found))


# --- run -------------------------------------------------------------------------------------------------


def _stack_urls(stack: Stack | None, urls: Mapping[str, str] | None) -> dict[str, str]:
    found: dict[str, str] = {}
    if stack is not None:
        found.update(
            {
                k: v
                for k, v in stack.urls().items()
                if k in ("prometheus", "loki", "tempo", "victoriametrics")
            }
        )
    found.update(urls or {})
    return found


def run(
    source: Dashboard | str | Path | Mapping[str, Any],
    *,
    stack: Stack | None = None,
    urls: Mapping[str, str] | None = None,
    datasources: Sequence[Datasource] = LAB_DATASOURCES,
    start: float | None = None,
    end: float | None = None,
    window: float = 300.0,
    variables: Mapping[str, str | Sequence[str]] | None = None,
) -> DashboardRun:
    """Run every visible query of every panel over ``[end - window, end]``.

    Args:
        source: the dashboard (a file, JSON text, a document or a loaded :class:`Dashboard`).
        stack: where the backends are (``stack.url("prometheus")``, ``"loki"``, ``"tempo"``).
        urls: backends by kind (``{"prometheus": url}``), instead of or on top of ``stack``.
        datasources: what datasource references resolve against (default: the lab's four).
        start, end: unix seconds (default: the last ``window`` seconds up to now).
        variables: template variable values to use instead of the dashboard's current ones.

    Returns:
        Per panel, each query as sent and what it returned (or the backend's error).
    """
    dashboard = source if isinstance(source, Dashboard) else load(source)
    end = _time.time() if end is None else end
    start = end - window if start is None else start
    backends = _Backends(_stack_urls(stack, urls))
    default = next((d for d in datasources if d.type == "prometheus"), None)
    scrape = parse_duration(default.time_interval if default else "", default=15.0)
    base_window = Window(start, end, _nice((end - start) / 1000), scrape)
    try:
        values = _variable_values(dashboard, backends, datasources, base_window, variables or {})
        results = []
        for panel in dashboard.panels:
            if not panel.queries:
                continue
            targets = []
            for target in panel.targets:
                if target.hide:
                    continue
                ds, why = target_datasource(target, panel, dashboard, datasources)
                if ds is None or ds.type not in ("prometheus", "loki", "tempo"):
                    targets.append(
                        TargetResult(
                            target,
                            ds,
                            target.expr,
                            error=why or "this datasource cannot be queried",
                        )
                    )
                    continue
                if not target.expr.strip():
                    targets.append(TargetResult(target, ds, "", error="the query is empty"))
                    continue
                scrape_ds = parse_duration(ds.time_interval, default=scrape)
                panel_window = _panel_window(panel, start, end, scrape_ds)
                merged = {**values, **_macros(panel_window)}
                query = interpolate(target.expr, merged, dashboard.variables)
                targets.append(_run_target(backends, ds, target, query, panel_window))
            results.append(PanelResult(panel, tuple(targets)))
    finally:
        backends.close()
    shown = {k: ",".join(v) for k, v in values.items()}
    return DashboardRun(dashboard, base_window, tuple(results), shown)
