"""The public names of lab_stack.clients are pinned (STYLE.md §1)."""

from __future__ import annotations

import lab_stack.clients as clients


def test_all_is_pinned() -> None:
    """``lab_stack.clients.__all__`` lists exactly the public client API."""
    assert clients.__all__ == [
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


def test_every_exported_name_exists() -> None:
    """Every name in ``__all__`` is importable from the package."""
    for name in clients.__all__:
        assert getattr(clients, name) is not None, name
