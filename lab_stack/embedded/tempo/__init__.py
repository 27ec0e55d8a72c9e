"""The embedded Tempo: Tempo 2.3's trace API subset for machines where the real server cannot run.

Run it as its own process::

    python -m lab_stack.embedded.tempo --http-port 3200 --otlp-http-port 4318 \\
        --otlp-grpc-port 4317 --data-dir .lab/data/tempo

It ingests OTLP over HTTP (protobuf and JSON) and gRPC, serves ``/api/traces/<id>`` in Tempo's
``batches`` JSON, ``/api/search`` (tags or a TraceQL subset) in the 2.3 shape, the tag endpoints,
``/ready`` and ``/api/echo``. Everything acknowledged is in a segment log before the answer.
"""

from __future__ import annotations

from lab_stack.embedded.tempo.app import main
from lab_stack.embedded.tempo.otlp import BadRequest, hex_string_to_trace_id, trace_id_to_hex_string
from lab_stack.embedded.tempo.server import ServerConfig, create_app
from lab_stack.embedded.tempo.store import SearchParams, TraceStore
from lab_stack.embedded.tempo.traceql import (
    InvalidTraceQL,
    TraceQLError,
    UnsupportedTraceQL,
    parse_traceql,
)

__all__ = [
    "BadRequest",
    "InvalidTraceQL",
    "SearchParams",
    "ServerConfig",
    "TraceQLError",
    "TraceStore",
    "UnsupportedTraceQL",
    "create_app",
    "hex_string_to_trace_id",
    "main",
    "parse_traceql",
    "trace_id_to_hex_string",
]
