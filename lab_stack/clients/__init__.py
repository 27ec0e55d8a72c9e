"""Typed httpx clients for the lab's backends, all raising the :mod:`lab_stack.errors` family.

Each client takes the backend's base URL (read it from the stack: ``lab_stack.connect().url(name)``)
and keyword-only options: ``client=`` (an :class:`httpx.Client` to borrow), ``transport=`` (e.g.
:class:`httpx.MockTransport` in unit tests), ``timeout=``.

Example:
    >>> from lab_stack.clients import PrometheusClient
    >>> with PrometheusClient("http://127.0.0.1:9090") as prom:  # doctest: +SKIP
    ...     prom.query_value("sum(up)")
    4.0
"""

from __future__ import annotations

from lab_stack.clients._results import RangeSeries, Sample, range_series, samples, single_value
from lab_stack.clients.alertmanager import AlertmanagerClient, Matcher
from lab_stack.clients.grafana import GrafanaClient
from lab_stack.clients.loki import LogEntry, LokiClient, entries, lines
from lab_stack.clients.prometheus import PrometheusClient, Target
from lab_stack.clients.pushgateway import PushgatewayClient, PushGroup
from lab_stack.clients.sinks import Notification, SinksClient
from lab_stack.clients.tempo import Span, SpanEvent, TempoClient, spans

__all__ = [
    "AlertmanagerClient",
    "GrafanaClient",
    "LogEntry",
    "LokiClient",
    "Matcher",
    "Notification",
    "PrometheusClient",
    "PushGroup",
    "PushgatewayClient",
    "RangeSeries",
    "Sample",
    "SinksClient",
    "Span",
    "SpanEvent",
    "Target",
    "TempoClient",
    "entries",
    "lines",
    "range_series",
    "samples",
    "single_value",
    "spans",
]
