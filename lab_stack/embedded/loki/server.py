"""The embedded Loki's HTTP layer (Starlette): Loki 2.9's push, query and metadata endpoints.

Handlers run on the event loop thread, one at a time, so the store needs no locks. A push is in
the segment log before its 204 goes out.

Example:
    >>> app = create_app(data_dir=None)
    >>> sorted(r.path for r in app.routes)[:2]
    ['/api/prom/push', '/loki/api/v1/index/stats']
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np
import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from .engine import Matrix, QueryStats, format_value, run_log_query, run_metric_query
from .logql import LogQLError, LogQuery, parse, parse_prom_duration, parse_selector
from .push import MAX_BODY_BYTES, PushError, decode_push, parse_rfc3339
from .store import Entry, LokiStore

__all__ = ["LOKI_VERSION", "create_app"]

LOKI_VERSION = "2.9.3"
NS = 1_000_000_000
MAX_ENTRIES_LIMIT = 5000
MAX_POINTS = 11000
MAX_LINE_SIZE = 256 * 1024
REJECT_OLDER_THAN_NS = 168 * 3600 * NS
CREATION_GRACE_NS = 10 * 60 * NS
JSON_TYPE = "application/json; charset=UTF-8"

log = structlog.get_logger("lab_stack.embedded.loki")


class _BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _text(message: str, status: int = 400) -> PlainTextResponse:
    return PlainTextResponse(message.rstrip("\n") + "\n", status_code=status)


def _json(doc: object) -> Response:
    body = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return Response(body, media_type=JSON_TYPE)


# -- parameters ----------------------------------------------------------------------------


def parse_timestamp(value: str | None, default: int, name: str) -> int:
    """Loki's ``loghttp`` timestamp: ≤10 digits = s, >10 = ns, float = s, or RFC3339(Nano)."""
    if value is None or value == "":
        return default
    if "." in value:
        try:
            f = float(value)
            if math.isfinite(f):
                s = math.floor(f)
                frac = round((f - s) * 1000) / 1000
                return int(s) * NS + round(frac * NS)
        except ValueError:
            pass
    if value.lstrip("-").isdigit():
        n = int(value)
        if abs(n) >= 2**63:
            raise _BadRequest(
                f'invalid {name}: strconv.ParseInt: parsing "{value}": value out of range'
            )
        return n * NS if len(value.lstrip("-")) <= 10 else n
    ts = parse_rfc3339(value)
    if ts is None:
        raise _BadRequest(
            f'invalid {name}: cannot parse "{value}" as a timestamp '
            "(seconds, nanoseconds or RFC3339)"
        )
    return ts


def _duration_param(value: str, name: str) -> int:
    try:
        f = float(value)
        if math.isfinite(f):
            return math.ceil(f * NS) if f > 0 else int(f * NS)
    except ValueError:
        pass
    d = parse_prom_duration(value)
    if d is None:
        raise _BadRequest(f'invalid {name}: cannot parse "{value}" to a valid duration')
    return d


async def _params(request: Request) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in request.query_params.multi_items():
        out.setdefault(k, []).append(v)
    if request.method == "POST":
        ctype = request.headers.get("content-type", "")
        if ctype.split(";", 1)[0].strip().lower() == "application/x-www-form-urlencoded":
            body = await request.body()
            if len(body) > MAX_BODY_BYTES:
                raise _BadRequest("request body too large", 413)
            try:
                pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
            except UnicodeDecodeError:
                raise _BadRequest("invalid form body: not UTF-8") from None
            for k, v in pairs:
                out.setdefault(k, []).append(v)
    return out


def _one(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def _limit(params: dict[str, list[str]]) -> int:
    raw = _one(params, "limit")
    if raw is None or raw == "":
        return 100
    try:
        limit = int(raw)
    except ValueError:
        raise _BadRequest(f'strconv.ParseUint: parsing "{raw}": invalid syntax') from None
    if limit <= 0:
        raise _BadRequest("limit must be a positive value")
    if limit > MAX_ENTRIES_LIMIT:
        raise _BadRequest(
            f"max entries limit per query exceeded, limit > max_entries_limit "
            f"({limit} > {MAX_ENTRIES_LIMIT})"
        )
    return limit


def _direction(params: dict[str, list[str]]) -> str:
    raw = (_one(params, "direction") or "backward").lower()
    if raw not in ("forward", "backward"):
        raise _BadRequest(f"invalid direction '{raw}'")
    return raw


def _bounds(params: dict[str, list[str]], default_since_ns: int) -> tuple[int, int]:
    now = time.time_ns()
    end = parse_timestamp(_one(params, "end"), now, "end")
    since = _one(params, "since")
    since_ns = _duration_param(since, "since") if since else default_since_ns
    start = parse_timestamp(_one(params, "start"), end - since_ns, "start")
    return start, end


# -- responses -------------------------------------------------------------------------------


def _stats(stats: QueryStats, exec_s: float) -> dict[str, Any]:
    chunk = {
        "headChunkBytes": 0,
        "headChunkLines": 0,
        "decompressedBytes": 0,
        "decompressedLines": 0,
        "compressedBytes": 0,
        "totalDuplicates": 0,
        "postFilterLines": 0,
        "headChunkStructuredMetadataBytes": 0,
        "decompressedStructuredMetadataBytes": 0,
    }
    store = {
        "totalChunksRef": 0,
        "totalChunksDownloaded": 0,
        "chunksDownloadTime": 0,
        "chunk": chunk,
        "chunkRefsFetchTime": 0,
    }
    ingester_store = {
        **store,
        "chunk": {**chunk, "headChunkBytes": stats.bytes, "headChunkLines": stats.lines},
    }
    cache = {
        k: {
            "entriesFound": 0,
            "entriesRequested": 0,
            "entriesStored": 0,
            "bytesReceived": 0,
            "bytesSent": 0,
            "requests": 0,
            "downloadTime": 0,
        }
        for k in ("chunk", "index", "result", "statsResult")
    }
    exec_s = max(exec_s, 1e-9)
    return {
        "summary": {
            "bytesProcessedPerSecond": int(stats.bytes / exec_s),
            "linesProcessedPerSecond": int(stats.lines / exec_s),
            "totalBytesProcessed": stats.bytes,
            "totalLinesProcessed": stats.lines,
            "execTime": exec_s,
            "queueTime": 0,
            "subqueries": 0,
            "totalEntriesReturned": stats.returned,
            "splits": 0,
            "shards": 0,
            "totalPostFilterLines": stats.lines,
            "totalStructuredMetadataBytesProcessed": 0,
        },
        "querier": {"store": store},
        "ingester": {
            "totalReached": 1,
            "totalChunksMatched": 0,
            "totalBatches": 1,
            "totalLinesSent": stats.returned,
            "store": ingester_store,
        },
        "cache": cache,
    }


def _seconds(ts_ns: int) -> int | float:
    ms = ts_ns // 1_000_000
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def _encode_streams(streams: list[tuple[dict[str, str], list[Entry]]]) -> list[dict[str, Any]]:
    out = []
    for labels, entries in streams:
        values: list[list[Any]] = []
        for ts, line, sm in entries:
            values.append([str(ts), line, sm] if sm else [str(ts), line])
        out.append({"stream": labels, "values": values})
    return out


def _encode_matrix(m: Matrix) -> list[dict[str, Any]]:
    steps = [_seconds(int(t)) for t in m.steps]
    out = []
    for key in sorted(m.series):
        labels, values = m.series[key]
        pts = [
            [steps[i], format_value(float(v))]
            for i, v in enumerate(values.tolist())
            if not math.isnan(v)
        ]
        if pts:
            out.append({"metric": labels, "values": pts})
    return out


def _encode_vector(m: Matrix) -> list[dict[str, Any]]:
    t = _seconds(int(m.steps[0]))
    out = []
    for key in sorted(m.series):
        labels, values = m.series[key]
        v = float(values[0])
        if not math.isnan(v):
            out.append({"metric": labels, "value": [t, format_value(v)]})
    return out


# -- app ------------------------------------------------------------------------------------


def create_app(
    *,
    data_dir: Path | None,
    retention_s: float = 24 * 3600.0,
    retention_bytes: int = 512 * 1024 * 1024,
    fsync: bool = False,
) -> Starlette:
    """Build the embedded Loki application over a store persisted under ``data_dir``."""
    store = LokiStore(
        data_dir, retention_s=retention_s, retention_bytes=retention_bytes, fsync=fsync
    )
    registry = CollectorRegistry()
    lines_total = Counter(
        "loki_distributor_lines_received",
        "The total number of lines received.",
        ["tenant"],
        registry=registry,
    )
    bytes_total = Counter(
        "loki_distributor_bytes_received",
        "The total number of uncompressed bytes received.",
        ["tenant"],
        registry=registry,
    )
    streams_gauge = Gauge("loki_ingester_memory_streams", "Streams in memory.", registry=registry)
    entries_gauge = Gauge(
        "loki_embedded_entries", "Entries held by the embedded Loki.", registry=registry
    )
    requests_total = Counter(
        "loki_request",
        "HTTP requests by route and status.",
        ["route", "status_code"],
        registry=registry,
    )

    async def push(request: Request) -> Response:
        legacy = "/loki/api/v1" not in request.url.path
        try:
            length = int(request.headers.get("content-length") or 0)
        except ValueError:
            length = 0
        if length > MAX_BODY_BYTES:
            requests_total.labels("push", "413").inc()
            return _text(f"push body larger than {MAX_BODY_BYTES} bytes", 413)
        chunks: list[bytes] = []
        size = 0
        async for part in request.stream():
            size += len(part)
            if size > MAX_BODY_BYTES:
                requests_total.labels("push", "413").inc()
                return _text(f"push body larger than {MAX_BODY_BYTES} bytes", 413)
            chunks.append(part)
        body = b"".join(chunks)
        try:
            batch = decode_push(
                body,
                content_type=request.headers.get("content-type", ""),
                encoding=request.headers.get("content-encoding", ""),
                legacy=legacy,
            )
        except PushError as exc:
            requests_total.labels("push", str(exc.status)).inc()
            return _text(str(exc), exc.status)
        except Exception as exc:  # hostile input must never become a 5xx
            requests_total.labels("push", "400").inc()
            return _text(f"cannot decode push body: {type(exc).__name__}: {exc}"[:512])
        now = time.time_ns()
        errors: list[str] = []
        accepted: list[tuple[dict[str, str], list[Entry]]] = []
        nlines = nbytes = 0
        for labels, entries in batch:
            good: list[Entry] = []
            stream_desc = json.dumps(labels)[:256]
            for ts, line, sm in entries:
                if (
                    len(line) > MAX_LINE_SIZE
                    and len(line.encode("utf-8", "replace")) > MAX_LINE_SIZE
                ):
                    errors.append(
                        f"Max entry size '{MAX_LINE_SIZE}' bytes exceeded for stream "
                        f"'{stream_desc}' while adding an entry with length '{len(line)}' bytes"
                    )
                elif ts < now - REJECT_OLDER_THAN_NS:
                    errors.append(
                        f"entry for stream '{stream_desc}' has timestamp too old: {ts}, "
                        f"oldest acceptable timestamp is: {now - REJECT_OLDER_THAN_NS}"
                    )
                elif ts > now + CREATION_GRACE_NS:
                    errors.append(f"entry for stream '{stream_desc}' has timestamp too new: {ts}")
                else:
                    good.append((ts, line, sm))
                    nlines += 1
                    nbytes += len(line)
            if good:
                accepted.append((labels, good))
        try:
            store.ingest(accepted)
        except OSError as exc:
            log.error("segment write failed", error=str(exc))
            requests_total.labels("push", "500").inc()
            return _text(f"cannot persist the push: {exc}", 500)
        lines_total.labels("fake").inc(nlines)
        bytes_total.labels("fake").inc(nbytes)
        if store.nbytes > store.retention_bytes:
            store.enforce_retention()
        if errors:
            requests_total.labels("push", "400").inc()
            more = f"\ntotal ignored: {len(errors)} out of {len(errors) + nlines}"
            return _text("\n".join(errors[:10]) + more)
        requests_total.labels("push", "204").inc()
        return Response(status_code=204)

    def _query_response(
        expr: object,
        start: int,
        end: int,
        step: int,
        limit: int,
        direction: str,
        instant: bool,
    ) -> Response:
        t0 = time.perf_counter()
        stats = QueryStats()
        if isinstance(expr, LogQuery):
            streams = run_log_query(store, expr, start, end, limit, direction, stats)
            data: dict[str, Any] = {"resultType": "streams", "result": _encode_streams(streams)}
        else:
            value = run_metric_query(store, expr, start, end, 0 if instant else step, stats)
            if isinstance(value, Matrix):
                if instant:
                    data = {"resultType": "vector", "result": _encode_vector(value)}
                else:
                    data = {"resultType": "matrix", "result": _encode_matrix(value)}
            elif instant:
                data = {
                    "resultType": "scalar",
                    "result": [_seconds(start), format_value(float(value[0]))],
                }
            else:
                m = Matrix(np.arange(start, end + 1, step, dtype=np.int64), {"{}": ({}, value)})
                data = {"resultType": "matrix", "result": _encode_matrix(m)}
        data["stats"] = _stats(stats, time.perf_counter() - t0)
        return _json({"status": "success", "data": data})

    async def query_range(request: Request) -> Response:
        try:
            params = await _params(request)
            expr = parse(_one(params, "query") or "")
            limit = _limit(params)
            direction = _direction(params)
            start, end = _bounds(params, 3600 * NS)
            if end < start:
                raise _BadRequest("end timestamp must not be before or equal to start time")
            raw_step = _one(params, "step")
            if raw_step:
                step = _duration_param(raw_step, "step")
            else:
                step = max((end - start) // NS // 250, 1) * NS
            if step <= 0:
                raise _BadRequest(
                    "zero or negative query resolution step widths are not accepted. "
                    "Try a positive integer"
                )
            if not isinstance(expr, LogQuery) and (end - start) // step + 1 > MAX_POINTS:
                raise _BadRequest(
                    "exceeded maximum resolution of 11,000 points per timeseries. "
                    "Try decreasing the query resolution (?step=XX)"
                )
            return _query_response(expr, start, end, step, limit, direction, instant=False)
        except (_BadRequest, LogQLError) as exc:
            return _text(str(exc), getattr(exc, "status", 400))

    async def query(request: Request) -> Response:
        try:
            params = await _params(request)
            expr = parse(_one(params, "query") or "")
            limit = _limit(params)
            direction = _direction(params)
            t = parse_timestamp(_one(params, "time"), time.time_ns(), "time")
            if isinstance(expr, LogQuery):
                # An instant log query reads the hour up to and including ``time``.
                return _query_response(expr, t - 3600 * NS, t + 1, 0, limit, direction, False)
            return _query_response(expr, t, t, 0, limit, direction, instant=True)
        except (_BadRequest, LogQLError) as exc:
            return _text(str(exc), getattr(exc, "status", 400))

    def _streams_in(params: dict[str, list[str]]) -> list[dict[str, str]]:
        start, end = _bounds(params, 6 * 3600 * NS)
        return [s.labels for s in store.streams.values() if s.overlaps(start, end)]

    async def labels(request: Request) -> Response:
        try:
            params = await _params(request)
            names = sorted({k for lbls in _streams_in(params) for k in lbls})
        except _BadRequest as exc:
            return _text(str(exc), exc.status)
        return _json({"status": "success", "data": names} if names else {"status": "success"})

    async def label_values(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            params = await _params(request)
            start, end = _bounds(params, 6 * 3600 * NS)
            q = _one(params, "query")
            streams = store.select(parse_selector(q)) if q else list(store.streams.values())
            values = sorted(
                {s.labels[name] for s in streams if name in s.labels and s.overlaps(start, end)}
            )
        except (_BadRequest, LogQLError) as exc:
            return _text(str(exc), getattr(exc, "status", 400))
        return _json({"status": "success", "data": values} if values else {"status": "success"})

    async def series(request: Request) -> Response:
        try:
            params = await _params(request)
            start, end = _bounds(params, 6 * 3600 * NS)
            matches = params.get("match[]", []) + params.get("match", [])
            found: dict[str, dict[str, str]] = {}
            candidates = [s for s in store.streams.values() if s.overlaps(start, end)]
            if not matches:
                found = {s.key: s.labels for s in candidates}
            for m in matches:
                matchers = parse_selector(m)
                if not matchers:
                    continue
                for s in candidates:
                    if all(x.matches(s.labels.get(x.name, "")) for x in matchers):
                        found[s.key] = s.labels
        except (_BadRequest, LogQLError) as exc:
            return _text(str(exc), getattr(exc, "status", 400))
        return _json({"status": "success", "data": [found[k] for k in sorted(found)]})

    async def ready(request: Request) -> Response:
        return _text("ready", 200)

    async def buildinfo(request: Request) -> Response:
        return _json(
            {
                "version": LOKI_VERSION,
                "revision": "embedded",
                "branch": "embedded",
                "buildUser": "lab_stack",
                "buildDate": "",
                "goVersion": "",
            }
        )

    async def metrics(request: Request) -> Response:
        streams_gauge.set(len(store.streams))
        entries_gauge.set(store.entries)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def unsupported(request: Request) -> Response:
        return _text(
            f"{request.url.path} is not supported by the embedded Loki; "
            "run the docker stack for full LogQL",
            400,
        )

    async def retention_loop() -> None:
        while True:
            await asyncio.sleep(10)
            try:
                store.enforce_retention()
            except OSError as exc:  # keep serving; the next round retries
                log.warning("retention failed", error=str(exc))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        t0 = time.perf_counter()
        loaded = store.replay()
        store.enforce_retention()
        log.info(
            "embedded loki ready",
            replayed_entries=loaded,
            streams=len(store.streams),
            seconds=round(time.perf_counter() - t0, 3),
            data_dir=str(data_dir),
        )
        task = asyncio.create_task(retention_loop())
        try:
            yield
        finally:
            task.cancel()
            store.close()
            log.info("embedded loki stopped")

    routes = [
        Route("/loki/api/v1/push", push, methods=["POST"]),
        Route("/api/prom/push", push, methods=["POST"]),
        Route("/loki/api/v1/query", query, methods=["GET", "POST"]),
        Route("/loki/api/v1/query_range", query_range, methods=["GET", "POST"]),
        Route("/loki/api/v1/labels", labels, methods=["GET", "POST"]),
        Route("/loki/api/v1/label", labels, methods=["GET", "POST"]),
        Route("/loki/api/v1/label/{name}/values", label_values, methods=["GET", "POST"]),
        Route("/loki/api/v1/series", series, methods=["GET", "POST"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/loki/api/v1/status/buildinfo", buildinfo, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/loki/api/v1/tail", unsupported, methods=["GET"]),
        Route("/loki/api/v1/index/stats", unsupported, methods=["GET", "POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.store = store
    return app
