"""Typed client for the Loki 2.9 HTTP API (``/loki/api/v1/...``), real or embedded.

Example:
    >>> from lab_stack.clients import LokiClient, lines
    >>> loki = LokiClient("http://127.0.0.1:3100")  # doctest: +SKIP
    >>> loki.push_lines({"app": "ml"}, ["hello", "world"])  # doctest: +SKIP
    >>> lines(loki.query_range('{app="ml"}', start=time.time() - 60))  # doctest: +SKIP
    ['world', 'hello']
"""

from __future__ import annotations

import time as _time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, Literal

from lab_stack.clients._http import BaseClient, TimeLike, format_duration
from lab_stack.clients._results import RangeSeries, Sample, range_series, samples

__all__ = [
    "LogEntry",
    "LokiClient",
    "RangeSeries",
    "Sample",
    "entries",
    "lines",
    "nanoseconds",
    "range_series",
    "samples",
]

Direction = Literal["forward", "backward"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def nanoseconds(value: TimeLike) -> str:
    """Render a time as Loki wants it: integer nanoseconds since the epoch (strings pass unchanged).

    Numbers are unix **seconds** (like ``time.time()``); datetimes are converted.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.astimezone()
        delta = moment - _EPOCH
        return str((delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000)
    if isinstance(value, int):
        return str(value * 10**9)
    # Decimal(str(...)) keeps what the float prints (1700000060.25), not its binary error.
    return str(int((Decimal(str(value)) * 10**9).to_integral_value()))


@dataclass(frozen=True)
class LogEntry:
    """One log line of a ``streams`` result, with its stream labels and structured metadata."""

    timestamp_ns: int
    line: str
    labels: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)


def entries(data: Mapping[str, Any]) -> list[LogEntry]:
    """The log entries of a ``streams`` result, in the order Loki returned them (stream by stream).

    Non-stream results (matrix, vector) give an empty list.
    """
    if data.get("resultType") != "streams":
        return []
    out: list[LogEntry] = []
    for stream in data.get("result") or []:
        labels = dict(stream.get("stream", {}))
        for value in stream.get("values", []):
            metadata = dict(value[2]) if len(value) > 2 and isinstance(value[2], Mapping) else {}
            out.append(LogEntry(int(value[0]), str(value[1]), labels, metadata))
    return out


def lines(data: Mapping[str, Any]) -> list[str]:
    """The log lines of a ``streams`` result, in the order Loki returned them."""
    return [entry.line for entry in entries(data)]


def _stream_values(values: Iterable[Sequence[Any]]) -> list[list[Any]]:
    out: list[list[Any]] = []
    for value in values:
        timestamp = value[0]
        if not isinstance(timestamp, str):
            timestamp = nanoseconds(timestamp)
        item: list[Any] = [timestamp, str(value[1])]
        if len(value) > 2 and value[2]:
            item.append({str(k): str(v) for k, v in dict(value[2]).items()})
        out.append(item)
    return out


class LokiClient(BaseClient):
    """Client for one Loki (real 2.9 or the lab's embedded one): push, query, labels, series."""

    backend: ClassVar[str] = "Loki"
    component: ClassVar[str] = "loki"
    query_language: ClassVar[str] = "LogQL"

    def _status_hint(self, status: int, query: str | None, detail: str) -> str:
        if "not supported by the embedded Loki" in detail:
            return (
                "rewrite the query with the supported subset, or run the docker stack (full LogQL)."
            )
        if status == 400 and query is not None:
            return (
                "check the LogQL syntax: a stream selector with at least one non-empty matcher "
                '({app="x"}), then line filters (|= "txt"), parsers (| json), label filters, '
                "and a range ([5m]) inside metric functions."
            )
        if status == 400:
            return (
                'check the push body: {"streams": [{"stream": {labels}, "values": '
                '[["<ns as string>", "line"]]}]}.'
            )
        return super()._status_hint(status, query, detail)

    # -- push ------------------------------------------------------------------------------------

    def push(self, streams: Sequence[Mapping[str, Any]]) -> None:
        """Push streams in the v1 JSON shape: ``[{"stream": {...}, "values": [[ts, line]]}]``.

        Timestamps may be strings of nanoseconds (sent as they are) or unix seconds / datetimes
        (converted); a third element of a value is structured metadata.
        """
        body = {
            "streams": [
                {
                    "stream": {str(k): str(v) for k, v in dict(s["stream"]).items()},
                    "values": _stream_values(s["values"]),
                }
                for s in streams
            ]
        }
        self._request("POST", "/loki/api/v1/push", json_body=body)

    def push_lines(
        self,
        labels: Mapping[str, str],
        log_lines: Iterable[str],
        *,
        timestamp: TimeLike | None = None,
    ) -> None:
        """Push lines to one stream, 1 ns apart from ``timestamp`` (default: now), in order."""
        base = int(nanoseconds(_time.time() if timestamp is None else timestamp))
        values = [[str(base + i), line] for i, line in enumerate(log_lines)]
        self.push([{"stream": dict(labels), "values": values}])

    # -- queries ---------------------------------------------------------------------------------

    def query(
        self,
        q: str,
        *,
        time: TimeLike | None = None,
        limit: int | None = None,
        direction: Direction | None = None,
    ) -> dict[str, Any]:
        """Instant query (``/loki/api/v1/query``); returns ``data`` (``resultType``, ``result``)."""
        params = {
            "query": q,
            "time": None if time is None else nanoseconds(time),
            "limit": limit,
            "direction": direction,
        }
        result: dict[str, Any] = self._data("GET", "/loki/api/v1/query", params=params, query=q)
        return result

    def query_range(
        self,
        q: str,
        *,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        step: float | timedelta | str | None = None,
        limit: int | None = None,
        direction: Direction | None = None,
    ) -> dict[str, Any]:
        """Range query (``/loki/api/v1/query_range``); returns ``data`` (streams or matrix).

        Loki's defaults apply to what is left out: the last hour, limit 100, backward.
        """
        params = {
            "query": q,
            "start": None if start is None else nanoseconds(start),
            "end": None if end is None else nanoseconds(end),
            "step": None if step is None else format_duration(step),
            "limit": limit,
            "direction": direction,
        }
        result: dict[str, Any] = self._data(
            "GET", "/loki/api/v1/query_range", params=params, query=q
        )
        return result

    def labels(self, *, start: TimeLike | None = None, end: TimeLike | None = None) -> list[str]:
        """Label names seen in the time range (Loki omits ``data`` when there are none)."""
        params = {
            "start": None if start is None else nanoseconds(start),
            "end": None if end is None else nanoseconds(end),
        }
        data = self._data("GET", "/loki/api/v1/labels", params=params, allow_missing_data=True)
        return list(data or [])

    def label_values(
        self, name: str, *, start: TimeLike | None = None, end: TimeLike | None = None
    ) -> list[str]:
        """Values of label ``name`` seen in the time range."""
        params = {
            "start": None if start is None else nanoseconds(start),
            "end": None if end is None else nanoseconds(end),
        }
        data = self._data(
            "GET", f"/loki/api/v1/label/{name}/values", params=params, allow_missing_data=True
        )
        return list(data or [])

    def series(
        self,
        match: str | Sequence[str],
        *,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
    ) -> list[dict[str, str]]:
        """Label sets of the streams matching one or more selectors (``match[]``)."""
        matches = [match] if isinstance(match, str) else list(match)
        params = {
            "match[]": matches,
            "start": None if start is None else nanoseconds(start),
            "end": None if end is None else nanoseconds(end),
        }
        data = self._data(
            "GET",
            "/loki/api/v1/series",
            params=params,
            query=" ".join(matches),
            allow_missing_data=True,
        )
        return list(data or [])

    def ready(self) -> bool:
        """True when Loki answers ``/ready`` with 200; False otherwise, never raises."""
        return self._probe("/ready")
