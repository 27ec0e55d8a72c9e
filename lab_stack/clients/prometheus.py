"""Typed client for the Prometheus HTTP API (``/api/v1/...``, ``/-/ready``, ``/-/reload``).

Example:
    >>> from lab_stack.clients import PrometheusClient
    >>> prom = PrometheusClient("http://127.0.0.1:9090")  # doctest: +SKIP
    >>> prom.query_value('sum(up{job="prometheus"})')  # doctest: +SKIP
    1.0
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar, Literal

from lab_stack.clients._http import (
    BaseClient,
    TimeLike,
    format_duration,
    poll,
    unix_seconds,
)
from lab_stack.clients._results import (
    RangeSeries,
    Sample,
    range_series,
    samples,
    single_value,
)

__all__ = [
    "PrometheusClient",
    "RangeSeries",
    "Sample",
    "Target",
    "range_series",
    "samples",
    "single_value",
]


@dataclass(frozen=True)
class Target:
    """One scrape target from ``/api/v1/targets``: its pool, URL, health and last error."""

    scrape_pool: str
    scrape_url: str
    health: str
    last_error: str
    labels: Mapping[str, str] = field(default_factory=dict)
    discovered_labels: Mapping[str, str] = field(default_factory=dict)
    last_scrape: str = ""
    last_scrape_duration: float = 0.0

    @property
    def job(self) -> str:
        """The target's ``job`` label (its scrape pool when the label was relabelled away)."""
        return self.labels.get("job", self.scrape_pool)

    @property
    def up(self) -> bool:
        """True when the last scrape succeeded."""
        return self.health == "up"

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> Target:
        """Build from one element of ``activeTargets`` or ``droppedTargets``."""
        return cls(
            scrape_pool=str(raw.get("scrapePool", "")),
            scrape_url=str(raw.get("scrapeUrl", "")),
            health=str(raw.get("health", "unknown")),
            last_error=str(raw.get("lastError", "")),
            labels=dict(raw.get("labels", {})),
            discovered_labels=dict(raw.get("discoveredLabels", {})),
            last_scrape=str(raw.get("lastScrape", "")),
            last_scrape_duration=float(raw.get("lastScrapeDuration", 0.0)),
        )


class PrometheusClient(BaseClient):
    """Client for one Prometheus server; every method maps onto one HTTP API call.

    Example:
        >>> prom = PrometheusClient("http://127.0.0.1:9090")  # doctest: +SKIP
        >>> [t.health for t in prom.targets(job="prometheus")]  # doctest: +SKIP
        ['up']
    """

    backend: ClassVar[str] = "Prometheus"
    component: ClassVar[str] = "prometheus"
    query_language: ClassVar[str] = "PromQL"

    def _status_hint(self, status: int, query: str | None, detail: str) -> str:
        if "Lifecycle API is not enabled" in detail:
            return "start Prometheus with --web.enable-lifecycle (the lab stack does) to reload."
        if "failed to reload config" in detail:
            return (
                "run `promtool check config` (and `promtool check rules`) on the files; "
                "Prometheus keeps serving the previous configuration until they pass."
            )
        if status == 422:
            return (
                "the query parsed but could not be evaluated (too many samples, a timeout, "
                "or mismatched vectors); narrow the time range, raise the step or aggregate."
            )
        if status == 400 and query is not None:
            return (
                "check the PromQL syntax (brackets, quotes, label matchers, range durations "
                "such as [5m]); `promtool query instant` or the Prometheus UI show where it fails."
            )
        if status == 503:
            return "Prometheus is starting or overloaded; retry, or `lab logs prometheus`."
        return super()._status_hint(status, query, detail)

    # -- queries ---------------------------------------------------------------------------------

    def query(
        self, expr: str, *, time: TimeLike | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """Evaluate an instant query; return its ``data`` (``resultType`` and ``result``)."""
        params = {
            "query": expr,
            "time": None if time is None else unix_seconds(time),
            "timeout": None if timeout is None else format_duration(timeout),
        }
        result: dict[str, Any] = self._data("POST", "/api/v1/query", data=_form(params), query=expr)
        return result

    def query_samples(self, expr: str, *, time: TimeLike | None = None) -> list[Sample]:
        """Evaluate an instant query and return its samples (vector or scalar)."""
        return samples(self.query(expr, time=time))

    def query_value(self, expr: str, *, time: TimeLike | None = None) -> float | None:
        """The single value of an instant query; ``None`` when it returns no series."""
        return single_value(self.query(expr, time=time), expr=expr)

    def query_range(
        self,
        expr: str,
        *,
        start: TimeLike,
        end: TimeLike,
        step: float | timedelta | str,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Evaluate a range query; return its ``data`` (a ``matrix``; see :func:`range_series`)."""
        params = {
            "query": expr,
            "start": unix_seconds(start),
            "end": unix_seconds(end),
            "step": format_duration(step),
            "timeout": None if timeout is None else format_duration(timeout),
        }
        result: dict[str, Any] = self._data(
            "POST", "/api/v1/query_range", data=_form(params), query=expr
        )
        return result

    def series(
        self,
        match: str | Sequence[str],
        *,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
    ) -> list[dict[str, str]]:
        """The label sets of the series matching one or more selectors (``match[]``)."""
        matches = [match] if isinstance(match, str) else list(match)
        params = {
            "match[]": matches,
            "start": None if start is None else unix_seconds(start),
            "end": None if end is None else unix_seconds(end),
        }
        result: list[dict[str, str]] = self._data(
            "GET", "/api/v1/series", params=params, query=" ".join(matches)
        )
        return result

    def labels(self, *, match: Sequence[str] = ()) -> list[str]:
        """All label names (optionally of the series matching ``match``)."""
        result: list[str] = self._data(
            "GET", "/api/v1/labels", params={"match[]": list(match) or None}
        )
        return result

    def label_values(self, name: str, *, match: Sequence[str] = ()) -> list[str]:
        """All values of label ``name`` (optionally among the series matching ``match``)."""
        result: list[str] = self._data(
            "GET", f"/api/v1/label/{name}/values", params={"match[]": list(match) or None}
        )
        return result

    def metadata(self, metric: str | None = None, *, limit: int | None = None) -> dict[str, Any]:
        """Type, help and unit per metric name, as ``{name: [{"type", "help", "unit"}]}``."""
        result: dict[str, Any] = self._data(
            "GET", "/api/v1/metadata", params={"metric": metric, "limit": limit}
        )
        return result

    # -- targets, rules, alerts ------------------------------------------------------------------

    def targets(
        self,
        state: Literal["active", "dropped", "any"] = "active",
        *,
        job: str | None = None,
    ) -> list[Target]:
        """The scrape targets in ``state``, optionally only those of ``job``."""
        data = self._data("GET", "/api/v1/targets", params={"state": state})
        raw: list[Mapping[str, Any]] = []
        if state in ("active", "any"):
            raw.extend(data.get("activeTargets") or [])
        if state in ("dropped", "any"):
            raw.extend(data.get("droppedTargets") or [])
        found = [Target.from_api(item) for item in raw]
        if job is not None:
            found = [t for t in found if t.job == job or t.scrape_pool == job]
        return found

    def rules(self, *, type: Literal["alert", "record"] | None = None) -> list[dict[str, Any]]:
        """The loaded rule groups (``name``, ``file``, ``rules`` with ``health``, ``lastError``)."""
        data = self._data("GET", "/api/v1/rules", params={"type": type})
        groups: list[dict[str, Any]] = data.get("groups") or []
        return groups

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Prometheus holds now (``labels``, ``state``, ``activeAt``, ``value``)."""
        data = self._data("GET", "/api/v1/alerts")
        found: list[dict[str, Any]] = data.get("alerts") or []
        return found

    def alertmanagers(self) -> dict[str, Any]:
        """The Alertmanagers Prometheus sends to (``activeAlertmanagers``, ...)."""
        result: dict[str, Any] = self._data("GET", "/api/v1/alertmanagers")
        return result

    # -- status ----------------------------------------------------------------------------------

    def config(self) -> str:
        """The running configuration, as the YAML text Prometheus loaded."""
        data = self._data("GET", "/api/v1/status/config")
        return str(data.get("yaml", ""))

    def flags(self) -> dict[str, str]:
        """The command-line flags Prometheus runs with (``{"web.enable-lifecycle": "true"}``)."""
        result: dict[str, str] = self._data("GET", "/api/v1/status/flags")
        return result

    def tsdb_status(self) -> dict[str, Any]:
        """TSDB cardinality statistics (``headStats``, ``seriesCountByMetricName``, ...)."""
        result: dict[str, Any] = self._data("GET", "/api/v1/status/tsdb")
        return result

    def runtime_info(self) -> dict[str, Any]:
        """Runtime information (``reloadConfigSuccess``, ``lastConfigTime``, ...)."""
        result: dict[str, Any] = self._data("GET", "/api/v1/status/runtimeinfo")
        return result

    def buildinfo(self) -> dict[str, Any]:
        """Build information (``version``, ``revision``, ``goVersion``)."""
        result: dict[str, Any] = self._data("GET", "/api/v1/status/buildinfo")
        return result

    # -- lifecycle -------------------------------------------------------------------------------

    def reload(self) -> None:
        """Ask Prometheus to reload its configuration and rules (``POST /-/reload``)."""
        self._request("POST", "/-/reload")

    def ready(self) -> bool:
        """True when Prometheus answers ``/-/ready`` with 200; False otherwise, never raises."""
        return self._probe("/-/ready")

    def healthy(self) -> bool:
        """True when Prometheus answers ``/-/healthy`` with 200; False otherwise, never raises."""
        return self._probe("/-/healthy")

    def wait_for(
        self,
        expr: str,
        predicate: Callable[[list[Sample]], bool] | None = None,
        *,
        timeout: float = 30.0,
        interval: float = 0.5,
    ) -> list[Sample]:
        """Re-run an instant query until ``predicate(samples)`` holds (default: any sample).

        Returns:
            The samples that satisfied the predicate.

        Raises:
            LabError: the timeout passed; the message shows the last result.
            QueryError: the query itself is rejected (no point in waiting).
        """
        check = predicate or (lambda found: bool(found))

        def describe(last: list[Sample] | None) -> str:
            if last is None:
                shown = "no answer"
            else:
                shown = ", ".join(f"{dict(s.metric)}={s.value:g}" for s in last[:5]) or "no series"
                if len(last) > 5:
                    shown += f" (and {len(last) - 5} more)"
            return (
                f"the PromQL {expr!r} at {self.base_url} never satisfied the condition; last "
                f"result: {shown}. Hint: check the targets (`lab doctor`) and that the metric "
                "exists, or raise timeout=."
            )

        return poll(
            lambda: self.query_samples(expr),
            check,
            timeout=timeout,
            interval=interval,
            describe=describe,
        )


def _form(params: Mapping[str, str | None]) -> dict[str, str]:
    return {key: value for key, value in params.items() if value is not None}
