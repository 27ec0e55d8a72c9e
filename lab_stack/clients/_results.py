"""Typed views of the Prometheus-style query results that Prometheus and Loki both return.

``data`` of an instant query is ``{"resultType": "vector"|"scalar"|"string"|"streams", ...}``; of a
range query ``{"resultType": "matrix"|"streams", ...}``. These helpers turn the numeric kinds into
small frozen dataclasses so that graders compare floats, not strings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lab_stack.errors import QueryError

__all__ = ["RangeSeries", "Sample", "range_series", "samples", "single_value"]


@dataclass(frozen=True)
class Sample:
    """One instant-query sample: the series labels, the value and its timestamp (unix seconds)."""

    metric: Mapping[str, str] = field(default_factory=dict)
    value: float = math.nan
    timestamp: float = 0.0


@dataclass(frozen=True)
class RangeSeries:
    """One range-query series: its labels and ``(timestamp, value)`` points in time order."""

    metric: Mapping[str, str] = field(default_factory=dict)
    points: tuple[tuple[float, float], ...] = ()

    @property
    def values(self) -> list[float]:
        """The values alone, in time order."""
        return [value for _, value in self.points]


def _point(raw: Any) -> tuple[float, float]:
    timestamp, value = raw
    return float(timestamp), float(value)


def samples(data: Mapping[str, Any]) -> list[Sample]:
    """The samples of an instant-query ``data`` (a vector, or a scalar as one label-less sample).

    Raises:
        QueryError: ``data`` is a matrix or streams result (use :func:`range_series` or ``lines``).
    """
    kind = data.get("resultType")
    result = data.get("result")
    if kind == "vector":
        out = []
        for item in result or []:
            timestamp, value = _point(item["value"])
            out.append(Sample(dict(item.get("metric", {})), value, timestamp))
        return out
    if kind == "scalar":
        timestamp, value = _point(result)
        return [Sample({}, value, timestamp)]
    raise QueryError(
        f"Expected an instant vector or scalar result, got resultType={kind!r}. Hint: use "
        "range_series() for a range query or a range-vector expression, lines() for log streams."
    )


def range_series(data: Mapping[str, Any]) -> list[RangeSeries]:
    """The series of a ``matrix`` result (a range query, or an instant query of a range vector).

    Raises:
        QueryError: ``data`` is not a matrix result.
    """
    kind = data.get("resultType")
    if kind != "matrix":
        raise QueryError(
            f"Expected a matrix result, got resultType={kind!r}. Hint: use samples() for an "
            "instant vector or scalar, lines() for log streams."
        )
    return [
        RangeSeries(dict(item.get("metric", {})), tuple(_point(p) for p in item.get("values", [])))
        for item in data.get("result") or []
    ]


def single_value(data: Mapping[str, Any], *, expr: str = "") -> float | None:
    """The one value of an instant result: ``None`` when empty; an error when several series match.

    Raises:
        QueryError: the result holds more than one series.
    """
    found = samples(data)
    if not found:
        return None
    if len(found) > 1:
        labels = ", ".join(str(dict(s.metric)) for s in found[:5])
        raise QueryError(
            f"Expected at most one series from {expr!r}, got {len(found)}: {labels}. "
            "Hint: aggregate (sum(...), max(...)) or add label matchers so that one series is left."
        )
    return found[0].value
