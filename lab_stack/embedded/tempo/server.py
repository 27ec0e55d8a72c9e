"""The embedded Tempo's network side: the HTTP API (Starlette), OTLP/HTTP and OTLP/gRPC.

All handlers run on one asyncio loop (uvicorn for HTTP, ``grpc.aio`` for gRPC), so the store is
only ever touched by one coroutine at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import structlog
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from lab_stack.embedded.tempo.otlp import (
    BadRequest,
    decode_export,
    decompress,
    hex_string_to_trace_id,
)
from lab_stack.embedded.tempo.store import SearchParams, TraceStore
from lab_stack.embedded.tempo.traceql import TraceQLError, parse_traceql

__all__ = [
    "ServerConfig",
    "bind_socket",
    "create_app",
    "create_grpc_server",
    "parse_go_duration",
    "parse_logfmt",
]

log = structlog.get_logger("lab_stack.embedded.tempo")

TRACE_SERVICE = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name
_GO_DURATION = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1, "us": 1e3, "µs": 1e3, "μs": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}
_SEARCH_PARAMS = {"q", "tags", "minDuration", "maxDuration", "limit", "start", "end", "spss"}


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """Limits of the network side."""

    max_request_bytes: int = 16 * 2**20
    retention_interval_s: float = 10.0


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.spans = Counter(
            "tempo_distributor_spans_received_total",
            "Spans accepted through OTLP (HTTP and gRPC).",
            ["protocol"],
            registry=registry,
        )
        self.rejected = Counter(
            "tempo_embedded_rejected_requests_total",
            "Requests answered with a 4xx or INVALID_ARGUMENT.",
            ["endpoint"],
            registry=registry,
        )
        self.queries = Counter(
            "tempo_embedded_queries_total",
            "Read requests served, by endpoint.",
            ["endpoint"],
            registry=registry,
        )
        self.traces = Gauge("tempo_embedded_traces", "Traces held in memory.", registry=registry)
        self.bytes = Gauge(
            "tempo_embedded_bytes", "Bytes of trace data held in memory.", registry=registry
        )


def parse_go_duration(text: str) -> int:
    """Parse a Go duration (``1h2m``, ``100ms``, ``0``) into nanoseconds; raise ValueError."""
    body = text.lstrip("+-")
    sign = -1 if text.startswith("-") else 1
    if body == "0":
        return 0
    pos, total = 0, 0.0
    while pos < len(body):
        m = _GO_DURATION.match(body, pos)
        if m is None or m.group(1) in ("", "."):
            raise ValueError(f"time: invalid duration {text!r}")
        total += float(m.group(1)) * _GO_UNITS[m.group(2)]
        pos = m.end()
    if not body:
        raise ValueError(f"time: invalid duration {text!r}")
    return sign * int(total)


def parse_logfmt(text: str) -> list[tuple[str, str]]:
    """Parse logfmt pairs (``k=v k2="v w"``) as Tempo reads the ``tags`` parameter."""
    pairs: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t\n":
            i += 1
        if i >= n:
            break
        start = i
        while i < n and text[i] not in " \t\n=":
            if text[i] == '"':
                raise BadRequest(f"invalid tags {text!r}: unexpected '\"' in a key")
            i += 1
        key = text[start:i]
        if not key:
            raise BadRequest(f"invalid tags {text!r}: unexpected '=' at position {i + 1}")
        value = ""
        if i < n and text[i] == "=":
            i += 1
            if i < n and text[i] == '"':
                i += 1
                chars: list[str] = []
                while True:
                    if i >= n:
                        raise BadRequest(f"invalid tags {text!r}: unterminated quoted value")
                    ch = text[i]
                    if ch == "\\" and i + 1 < n:
                        nxt = text[i + 1]
                        chars.append({"n": "\n", "t": "\t", "r": "\r"}.get(nxt, nxt))
                        i += 2
                        continue
                    if ch == '"':
                        i += 1
                        break
                    chars.append(ch)
                    i += 1
                value = "".join(chars)
            else:
                start = i
                while i < n and text[i] not in " \t\n":
                    i += 1
                value = text[start:i]
        pairs.append((key, value))
    return pairs


def _int_param(
    request: Request, name: str, default: int | None, *, positive: bool = False
) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"invalid {name}: {raw!r} is not an integer") from None
    if positive and value <= 0:
        raise BadRequest(f"invalid {name}: must be a positive number")
    return value


def _duration_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return parse_go_duration(raw)
    except ValueError as exc:
        raise BadRequest(f"invalid {name}: {exc}") from None


def _search_params(request: Request) -> SearchParams:
    qp = request.query_params
    q = qp.get("q", "")
    tags_raw = qp.get("tags", "")
    if q and tags_raw:
        raise BadRequest("invalid request: can't specify tags and q in the same query")
    tags: list[tuple[str, str]] = parse_logfmt(tags_raw) if tags_raw else []
    if not q and not tags_raw and "start" not in qp and "end" not in qp:
        tags.extend((k, v) for k, v in qp.multi_items() if k not in _SEARCH_PARAMS)
    min_d = _duration_param(request, "minDuration")
    max_d = _duration_param(request, "maxDuration")
    if min_d is not None and max_d is not None and max_d < min_d:
        raise BadRequest("invalid maxDuration: must be greater than minDuration")
    start = _int_param(request, "start", None)
    end = _int_param(request, "end", None)
    if start is not None and end is not None and end < start:
        raise BadRequest("http parameter start must be before end")
    query = None
    if q:
        try:
            query = parse_traceql(q)
        except TraceQLError as exc:
            raise BadRequest(str(exc)) from None
    limit = _int_param(request, "limit", 20, positive=True)
    spss = _int_param(request, "spss", 3, positive=True)
    assert limit is not None and spss is not None
    return SearchParams(
        query=query,
        tags=tuple(tags),
        min_duration_ns=min_d,
        max_duration_ns=max_d,
        start_s=start,
        end_s=end,
        limit=limit,
        spss=spss,
    )


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise BadRequest(f"request body of {length} bytes exceeds {limit} bytes", status=413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(f"request body exceeds {limit} bytes", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    store: TraceStore,
    *,
    config: ServerConfig | None = None,
    registry: CollectorRegistry | None = None,
    grpc_address: tuple[str, int] | None = None,
) -> Starlette:
    """The ASGI app serving Tempo's HTTP API and OTLP/HTTP; its lifespan runs OTLP/gRPC too."""
    cfg = config or ServerConfig()
    registry = registry or CollectorRegistry()
    metrics = _Metrics(registry)

    def bad(endpoint: str, exc: BadRequest) -> Response:
        metrics.rejected.labels(endpoint).inc()
        return PlainTextResponse(str(exc), status_code=exc.status)

    async def otlp_traces(request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        is_json = content_type.split(";", 1)[0].strip().lower() == "application/json"
        try:
            body = await _read_body(request, cfg.max_request_bytes)
            body = decompress(
                body, request.headers.get("content-encoding", ""), limit=cfg.max_request_bytes
            )
            export, is_json = decode_export(body, content_type)
            spans = store.ingest(export, None if is_json else body)
        except BadRequest as exc:
            metrics.rejected.labels("/v1/traces").inc()
            status = status_pb2.Status(code=3, message=str(exc))
            if exc.status == 415:
                return PlainTextResponse(str(exc), status_code=415)
            if is_json:
                return JSONResponse({"code": 3, "message": str(exc)}, status_code=exc.status)
            return Response(
                status.SerializeToString(), exc.status, media_type="application/x-protobuf"
            )
        metrics.spans.labels("http").inc(spans)
        if is_json:
            return Response(b"{}", media_type="application/json")
        return Response(b"", media_type="application/x-protobuf")

    async def trace_by_id(request: Request) -> Response:
        metrics.queries.labels("/api/traces").inc()
        try:
            tid = hex_string_to_trace_id(request.path_params["trace_id"])
            start = _int_param(request, "start", None)
            end = _int_param(request, "end", None)
        except BadRequest as exc:
            return bad("/api/traces", exc)
        if "protobuf" in request.headers.get("accept", ""):
            raw = store.trace_proto(tid)
            if raw is None:
                return PlainTextResponse("trace not found", status_code=404)
            return Response(raw, media_type="application/protobuf")
        doc = store.trace_json(tid, start_s=start, end_s=end)
        if doc is None:
            return PlainTextResponse("trace not found", status_code=404)
        return JSONResponse(doc)

    async def search(request: Request) -> Response:
        metrics.queries.labels("/api/search").inc()
        try:
            params = _search_params(request)
        except BadRequest as exc:
            return bad("/api/search", exc)
        return JSONResponse(store.search(params))

    async def search_tags(request: Request) -> Response:
        metrics.queries.labels("/api/search/tags").inc()
        scope = request.query_params.get("scope") or None
        if scope not in (None, "all", "span", "resource", "intrinsic"):
            return bad("/api/search/tags", BadRequest(f"invalid scope: {scope}"))
        return JSONResponse({"tagNames": store.tag_names(scope)})

    async def tag_values(request: Request) -> Response:
        metrics.queries.labels("/api/search/tag/values").inc()
        return JSONResponse({"tagValues": store.tag_values(request.path_params["tag"])})

    async def ready(request: Request) -> Response:
        return PlainTextResponse("ready")

    async def echo(request: Request) -> Response:
        return PlainTextResponse("echo")

    async def buildinfo(request: Request) -> Response:
        return JSONResponse(
            {"version": "2.3.1-embedded", "revision": "embedded", "branch": "embedded"}
        )

    async def prometheus_metrics(request: Request) -> Response:
        metrics.traces.set(store.trace_count)
        metrics.bytes.set(store.bytes_held)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async def retention_loop() -> None:
            while True:
                await asyncio.sleep(cfg.retention_interval_s)
                try:
                    store.enforce_retention()
                except OSError as exc:
                    log.warning("retention failed", error=str(exc))

        grpc_server = None
        if grpc_address is not None:
            grpc_server = create_grpc_server(store, metrics, grpc_address, cfg)
            await grpc_server.start()
            log.info("otlp grpc listening", address=f"{grpc_address[0]}:{grpc_address[1]}")
        task = asyncio.create_task(retention_loop())
        try:
            yield
        finally:
            task.cancel()
            if grpc_server is not None:
                await grpc_server.stop(grace=2.0)

    routes = [
        Route("/v1/traces", otlp_traces, methods=["POST"]),
        Route("/api/traces/{trace_id}", trace_by_id, methods=["GET"]),
        Route("/api/search", search, methods=["GET"]),
        Route("/api/search/tags", search_tags, methods=["GET"]),
        Route("/api/search/tag/{tag:path}/values", tag_values, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/api/echo", echo, methods=["GET"]),
        Route("/api/status/buildinfo", buildinfo, methods=["GET"]),
        Route("/metrics", prometheus_metrics, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    # No redirect to a slash-less path: Tempo answers 404 there (and `0%2F` is no trace id).
    app.router.redirect_slashes = False
    return app


def create_grpc_server(
    store: TraceStore, metrics: _Metrics, address: tuple[str, int], cfg: ServerConfig
) -> grpc.aio.Server:
    """A ``grpc.aio`` server with OTLP ``TraceService/Export`` (call ``start()`` on the loop)."""
    host, port = address

    async def export(raw: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        try:
            request = ExportTraceServiceRequest.FromString(raw)
            spans = store.ingest(request, raw)
        except (DecodeError, BadRequest, RecursionError) as exc:
            metrics.rejected.labels("grpc").inc()
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"invalid ExportTraceServiceRequest: {exc}"
            )
            raise AssertionError("unreachable") from None
        metrics.spans.labels("grpc").inc(spans)
        return b""  # an empty ExportTraceServiceResponse

    handler = grpc.method_handlers_generic_handler(
        TRACE_SERVICE, {"Export": grpc.unary_unary_rpc_method_handler(export)}
    )
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", cfg.max_request_bytes),
            ("grpc.so_reuseport", 0),
        ]
    )
    server.add_generic_rpc_handlers((handler,))
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind the OTLP gRPC port {host}:{port}")
    return server


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``SO_REUSEADDR``, not ``SO_REUSEPORT``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock
