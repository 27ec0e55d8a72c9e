"""The lab's observability stack: Prometheus, Alertmanager, Pushgateway, node_exporter,
VictoriaMetrics, Loki, Tempo, a log shipper and notification sinks, on 127.0.0.1.

Example:
    >>> import lab_stack
    >>> stack = lab_stack.up()            # doctest: +SKIP
    >>> stack.url("prometheus")           # doctest: +SKIP
    'http://127.0.0.1:9090'
    >>> lab_stack.down()                  # doctest: +SKIP
"""

from __future__ import annotations

from lab_stack.errors import LabError
from lab_stack.settings import Settings, get_settings
from lab_stack.stack import ComponentStatus, Stack, connect, down, up

__all__ = [
    "ComponentStatus",
    "LabError",
    "Settings",
    "Stack",
    "connect",
    "down",
    "get_settings",
    "up",
]
