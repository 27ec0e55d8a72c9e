"""The embedded Loki: Loki 2.9's push/query HTTP API and a LogQL subset, for machines without Loki.

Run it with ``python -m lab_stack.embedded.loki --port 3100 --data-dir DIR``; use
:func:`create_app` to embed the ASGI app, :func:`~lab_stack.embedded.loki.logql.parse` to parse
LogQL.
"""

from __future__ import annotations

from .logql import LogQLError, ParseError, Unsupported, parse
from .server import LOKI_VERSION, create_app
from .store import LokiStore

__all__ = [
    "LOKI_VERSION",
    "LogQLError",
    "LokiStore",
    "ParseError",
    "Unsupported",
    "create_app",
    "parse",
]
