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

import importlib
from typing import TYPE_CHECKING, Any

from lab_stack.errors import LabError
from lab_stack.settings import Settings, get_settings

if TYPE_CHECKING:
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

# The stack's lifecycle (and httpx, yaml, psutil with it) is imported on first use only: the
# embedded servers import `lab_stack.errors` and `lab_stack.settings`, and start faster without it.
_LAZY = {"ComponentStatus", "Stack", "connect", "down", "up"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module("lab_stack.stack"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lab_stack' has no attribute {name!r}")
