"""The embedded Tempo's trace store: an index trace id -> spans, durable through a segment log.

Every export is appended to a :class:`~lab_stack.embedded.segments.SegmentLog` before it is
acknowledged and replayed at start. In memory each trace keeps its spans as serialized OTLP
``ResourceSpans`` fragments (compact; decoded on read) plus the summary that search needs.
Retention by age and by bytes bounds both memory and disk.

Example:
    >>> import tempfile, pathlib
    >>> store = TraceStore(pathlib.Path(tempfile.mkdtemp()))
    >>> store.trace_count
    0
    >>> store.close()
"""

from __future__ import annotations

import struct
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, TracesData

from lab_stack.embedded.segments import SegmentLog
from lab_stack.embedded.tempo.otlp import BadRequest, trace_id_to_hex_string
from lab_stack.embedded.tempo.traceql import (
    INTRINSICS,
    KIND_CODES,
    Attribute,
    Query,
    SpanRow,
    TraceRow,
    Value,
    evaluate,
)

__all__ = ["SearchParams", "TraceStore"]

log = structlog.get_logger("lab_stack.embedded.tempo")

_RECORD_HEADER = struct.Struct("<q")  # receive time, unix ns
_ROOT_NOT_RECEIVED = "<root span not yet received>"
_MAX_TAG_VALUES = 1000
_MAX_TAG_NAMES = 10_000
_TRACE_OVERHEAD = 256  # rough bytes of bookkeeping per trace, counted against retention
_STATUS_NAMES = {0: "unset", 1: "ok", 2: "error"}
_KIND_NAMES = {v: k for k, v in KIND_CODES.items()}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _value(v: AnyValue) -> Value | None:
    which = v.WhichOneof("value")
    if which == "string_value":
        return v.string_value
    if which == "int_value":
        return v.int_value
    if which == "double_value":
        return v.double_value
    if which == "bool_value":
        return v.bool_value
    return None


def _attrs(kvs: Any) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for kv in kvs:
        value = _value(kv.value)
        if value is not None:
            out[kv.key] = value
    return out


def _json_value(value: Value) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": value}


class _Trace:
    __slots__ = (
        "end_ns",
        "fragments",
        "nbytes",
        "root_name",
        "root_service",
        "start_ns",
        "updated_ns",
    )

    def __init__(self) -> None:
        self.fragments: list[bytes] = []
        self.start_ns = 2**64
        self.end_ns = 0
        self.root_name: str | None = None
        self.root_service: str | None = None
        self.nbytes = _TRACE_OVERHEAD
        self.updated_ns = 0


@dataclass(frozen=True, kw_only=True)
class SearchParams:
    """What ``/api/search`` asked for, already parsed and validated."""

    query: Query | None = None
    tags: tuple[tuple[str, str], ...] = ()
    min_duration_ns: int | None = None
    max_duration_ns: int | None = None
    start_s: int | None = None
    end_s: int | None = None
    limit: int = 20
    spss: int = 3


class TraceStore:
    """Traces by id, search, tag listings; durable in ``data_dir`` when one is given.

    Args:
        data_dir: folder for the segment log (``None``: memory only).
        retention_s: traces not updated for this long are dropped (memory and disk).
        retention_bytes: the store keeps at most about this many bytes (memory and disk).
        segment_bytes: size of one segment file.
    """

    def __init__(
        self,
        data_dir: Path | None,
        *,
        retention_s: float = 24 * 3600.0,
        retention_bytes: int = 512 * 2**20,
        segment_bytes: int = 32 * 2**20,
    ) -> None:
        self.retention_s = retention_s
        self.retention_bytes = retention_bytes
        self._log = SegmentLog(data_dir, segment_bytes=segment_bytes) if data_dir else None
        self._traces: OrderedDict[bytes, _Trace] = OrderedDict()
        self._bytes = 0
        self._span_tags: dict[str, set[str]] = {}
        self._resource_tags: dict[str, set[str]] = {}
        self._tags_dirty = False
        self.spans_received = 0

    # -- ingest --------------------------------------------------------------------------------

    @property
    def trace_count(self) -> int:
        """How many traces are held."""
        return len(self._traces)

    @property
    def bytes_held(self) -> int:
        """Approximate bytes of trace data held in memory."""
        return self._bytes

    def replay(self) -> int:
        """Reload the segment log (oldest first); return how many spans were restored."""
        if self._log is None:
            return 0
        self._log.enforce_retention(self.retention_s, self.retention_bytes)
        horizon = time.time_ns() - int(self.retention_s * 1e9)
        spans = 0
        for record in self._log.replay():
            if len(record) < _RECORD_HEADER.size:
                continue
            (received_ns,) = _RECORD_HEADER.unpack_from(record)
            if received_ns < horizon:
                continue
            request = ExportTraceServiceRequest()
            try:
                request.ParseFromString(record[_RECORD_HEADER.size :])
                _validate(request)
            except (DecodeError, BadRequest) as exc:  # written by a different version
                log.warning("skipping unreadable record", error=str(exc))
                continue
            spans += self._index(request, received_ns)
        self._evict(time.time_ns())
        return spans

    def ingest(self, request: ExportTraceServiceRequest, raw: bytes | None = None) -> int:
        """Validate, log durably, then index ``request``; return the number of spans.

        Raises:
            BadRequest: a span has a malformed trace or span id (nothing is stored).
        """
        _validate(request)
        now = time.time_ns()
        if self._log is not None:
            body = raw if raw is not None else request.SerializeToString()
            self._log.append([_RECORD_HEADER.pack(now) + body])
        spans = self._index(request, now)
        self._evict(now)
        self.spans_received += spans
        return spans

    def _index(self, request: ExportTraceServiceRequest, received_ns: int) -> int:
        traces = self._traces
        count = 0
        for rs in request.resource_spans:
            resource_attrs = _attrs(rs.resource.attributes)
            service = resource_attrs.get("service.name")
            service_name = service if isinstance(service, str) else None
            self._note_tags(self._resource_tags, resource_attrs)
            res_prefix = (
                _field(1, rs.resource.SerializeToString()) if rs.HasField("resource") else b""
            )
            res_suffix = _field(3, rs.schema_url.encode()) if rs.schema_url else b""
            for ss in rs.scope_spans:
                groups: dict[bytes, list[bytes]] = {}
                for span in ss.spans:
                    count += 1
                    if not span.HasField("status"):
                        span.status.SetInParent()
                    tid = span.trace_id
                    parts = groups.get(tid)
                    if parts is None:
                        parts = groups[tid] = []
                    parts.append(_field(2, span.SerializeToString()))
                    trace = traces.get(tid)
                    if trace is None:
                        trace = traces[tid] = _Trace()
                    if span.start_time_unix_nano < trace.start_ns:
                        trace.start_ns = span.start_time_unix_nano
                    if span.end_time_unix_nano > trace.end_ns:
                        trace.end_ns = span.end_time_unix_nano
                    if not span.parent_span_id:
                        trace.root_name = span.name
                        trace.root_service = service_name
                    if span.attributes:
                        self._note_tags(self._span_tags, _attrs(span.attributes))
                scope_prefix = (
                    _field(1, ss.scope.SerializeToString()) if ss.HasField("scope") else b""
                )
                scope_suffix = _field(3, ss.schema_url.encode()) if ss.schema_url else b""
                for tid, parts in groups.items():
                    fragment = (
                        res_prefix
                        + _field(2, scope_prefix + b"".join(parts) + scope_suffix)
                        + res_suffix
                    )
                    trace = traces[tid]
                    trace.fragments.append(fragment)
                    trace.nbytes += len(fragment)
                    trace.updated_ns = received_ns
                    self._bytes += len(fragment)
                    traces.move_to_end(tid)
        return count

    def _note_tags(self, index: dict[str, set[str]], attrs: dict[str, Value]) -> None:
        for key, value in attrs.items():
            values = index.get(key)
            if values is None:
                if len(index) >= _MAX_TAG_NAMES:
                    continue
                values = index[key] = set()
            if isinstance(value, str) and len(values) < _MAX_TAG_VALUES:
                values.add(value)

    def _evict(self, now_ns: int) -> None:
        horizon = now_ns - int(self.retention_s * 1e9)
        traces = self._traces
        while traces:
            tid, oldest = next(iter(traces.items()))
            if self._bytes <= self.retention_bytes and oldest.updated_ns >= horizon:
                break
            del traces[tid]
            self._bytes -= oldest.nbytes - _TRACE_OVERHEAD
            self._tags_dirty = True

    def enforce_retention(self) -> None:
        """Drop expired traces from memory and whole expired segments from disk."""
        self._evict(time.time_ns())
        if self._log is not None:
            self._log.enforce_retention(self.retention_s, self.retention_bytes)

    def close(self) -> None:
        """Close the segment log."""
        if self._log is not None:
            self._log.close()

    # -- read ----------------------------------------------------------------------------------

    def trace_json(
        self, trace_id: bytes, *, start_s: int | None = None, end_s: int | None = None
    ) -> dict[str, Any] | None:
        """The trace in Tempo's ``{"batches": [...]}`` JSON, or ``None`` when unknown."""
        trace = self._traces.get(trace_id)
        if trace is None or not _overlaps(trace, start_s, end_s):
            return None
        return {"batches": json_format.MessageToDict(self._merged(trace)).get("resourceSpans", [])}

    def trace_proto(self, trace_id: bytes) -> bytes | None:
        """The trace as serialized ``TracesData`` (field-compatible with ``tempopb.Trace``)."""
        trace = self._traces.get(trace_id)
        return None if trace is None else self._merged(trace).SerializeToString()

    def _merged(self, trace: _Trace) -> TracesData:
        data = TracesData()
        by_resource: dict[
            tuple[bytes, str], tuple[ResourceSpans, dict[tuple[bytes, str], ScopeSpans]]
        ] = {}
        seen: set[bytes] = set()
        for fragment in trace.fragments:
            rs = ResourceSpans.FromString(fragment)
            rkey = (rs.resource.SerializeToString(deterministic=True), rs.schema_url)
            entry = by_resource.get(rkey)
            if entry is None:
                target = data.resource_spans.add()
                if rs.HasField("resource"):
                    target.resource.CopyFrom(rs.resource)
                target.schema_url = rs.schema_url
                entry = by_resource[rkey] = (target, {})
            target_rs, scopes = entry
            for ss in rs.scope_spans:
                skey = (ss.scope.SerializeToString(deterministic=True), ss.schema_url)
                target_ss = scopes.get(skey)
                if target_ss is None:
                    target_ss = scopes[skey] = target_rs.scope_spans.add()
                    if ss.HasField("scope"):
                        target_ss.scope.CopyFrom(ss.scope)
                    target_ss.schema_url = ss.schema_url
                for span in ss.spans:
                    raw = span.SerializeToString()
                    if raw not in seen:  # an export retried after it was stored
                        seen.add(raw)
                        target_ss.spans.append(span)
        return data

    def _rows(self, trace: _Trace) -> TraceRow:
        spans: list[SpanRow] = []
        for fragment in trace.fragments:
            rs = ResourceSpans.FromString(fragment)
            resource = _attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    spans.append(
                        SpanRow(
                            span_id=s.span_id,
                            name=s.name,
                            kind=s.kind,
                            status=s.status.code,
                            status_message=s.status.message,
                            start=s.start_time_unix_nano,
                            end=s.end_time_unix_nano,
                            attrs=_attrs(s.attributes),
                            resource=resource,
                        )
                    )
        return TraceRow(spans, trace.root_name, trace.root_service, trace.end_ns - trace.start_ns)

    def search(self, params: SearchParams) -> dict[str, Any]:
        """Answer ``/api/search`` in Tempo 2.3's response shape."""
        candidates = sorted(self._traces.items(), key=lambda kv: kv[1].start_ns, reverse=True)
        results: list[dict[str, Any]] = []
        inspected = 0
        inspected_bytes = 0
        for tid, trace in candidates:
            if len(results) >= params.limit:
                break
            if not _overlaps(trace, params.start_s, params.end_s):
                continue
            duration = trace.end_ns - trace.start_ns
            if params.min_duration_ns is not None and duration < params.min_duration_ns:
                continue
            if params.max_duration_ns is not None and duration > params.max_duration_ns:
                continue
            inspected += 1
            inspected_bytes += trace.nbytes - _TRACE_OVERHEAD
            meta = _metadata(tid, trace)
            if params.query is not None:
                row = self._rows(trace)
                matched = evaluate(params.query, row)
                if not matched:
                    continue
                spanset = _spanset_json(params.query, row, matched, params.spss)
                meta["spanSet"] = spanset
                meta["spanSets"] = [spanset]
            elif params.tags and not _tags_match(self._rows(trace), params.tags):
                continue
            results.append(meta)
        metrics: dict[str, Any] = {}
        if inspected:
            metrics["inspectedTraces"] = inspected
            metrics["inspectedBytes"] = str(inspected_bytes)
        metrics["completedJobs"] = 1
        metrics["totalJobs"] = 1
        return {"traces": results, "metrics": metrics}

    def tag_names(self, scope: str | None) -> list[str]:
        """Attribute names seen, for ``scope`` ``span``, ``resource``, ``intrinsic`` or all."""
        self._refresh_tags()
        if scope == "intrinsic":
            return sorted(INTRINSICS)
        if scope == "span":
            return sorted(self._span_tags)
        if scope == "resource":
            return sorted(self._resource_tags)
        return sorted(set(self._span_tags) | set(self._resource_tags))

    def tag_values(self, tag: str) -> list[str]:
        """String values seen for the attribute ``tag`` (span or resource)."""
        if tag == "status.code":
            return ["unset", "ok", "error"]
        if tag == "error":
            return ["true"]
        self._refresh_tags()
        values = self._span_tags.get(tag, set()) | self._resource_tags.get(tag, set())
        return sorted(values)

    def _refresh_tags(self) -> None:
        if not self._tags_dirty:
            return
        self._span_tags.clear()
        self._resource_tags.clear()
        for trace in self._traces.values():
            for fragment in trace.fragments:
                rs = ResourceSpans.FromString(fragment)
                self._note_tags(self._resource_tags, _attrs(rs.resource.attributes))
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        self._note_tags(self._span_tags, _attrs(span.attributes))
        self._tags_dirty = False


def _validate(request: ExportTraceServiceRequest) -> None:
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                if len(span.trace_id) != 16 or span.trace_id == b"\0" * 16:
                    raise BadRequest(
                        f"span {span.name[:100]!r} has an invalid traceId of {len(span.trace_id)} "
                        "bytes. Hint: a trace id is 16 bytes (32 hex characters), not all zero."
                    )
                if len(span.span_id) != 8:
                    raise BadRequest(
                        f"span {span.name[:100]!r} has an invalid spanId of {len(span.span_id)} "
                        "bytes. Hint: a span id is 8 bytes (16 hex characters)."
                    )
                if len(span.parent_span_id) not in (0, 8):
                    raise BadRequest(
                        f"span {span.name[:100]!r} has an invalid parentSpanId of "
                        f"{len(span.parent_span_id)} bytes. Hint: leave it empty for a root span."
                    )


def _overlaps(trace: _Trace, start_s: int | None, end_s: int | None) -> bool:
    if start_s is not None and trace.end_ns < start_s * 10**9:
        return False
    return not (end_s is not None and trace.start_ns > end_s * 10**9)


def _metadata(tid: bytes, trace: _Trace) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "traceID": trace_id_to_hex_string(tid),
        "rootServiceName": trace.root_service or _ROOT_NOT_RECEIVED,
    }
    if trace.root_name is None:
        meta["rootTraceName"] = _ROOT_NOT_RECEIVED
    elif trace.root_name:
        meta["rootTraceName"] = trace.root_name
    meta["startTimeUnixNano"] = str(trace.start_ns)
    duration_ms = (trace.end_ns - trace.start_ns) // 1_000_000
    if duration_ms:  # Tempo's jsonpb omits zero values
        meta["durationMs"] = duration_ms
    return meta


def _spanset_json(
    query: Query, trace: TraceRow, matched: list[SpanRow], spss: int
) -> dict[str, Any]:
    attributes: list[Attribute] = list(dict.fromkeys(query.attributes()))
    intrinsics = query.intrinsics() & {"status", "kind", "statusMessage"}
    spans = []
    for span in matched[:spss]:
        out: dict[str, Any] = {"spanID": span.span_id.hex()}
        if span.name:
            out["name"] = span.name
        out["startTimeUnixNano"] = str(span.start)
        out["durationNanos"] = str(span.end - span.start)
        attrs: list[dict[str, Any]] = []
        seen: set[str] = set()
        for attr in attributes:
            value: Value | None = None
            if attr.scope in ("span", "any"):
                value = span.attrs.get(attr.name)
            if value is None and attr.scope in ("resource", "any"):
                value = span.resource.get(attr.name)
            if value is not None and attr.name not in seen:
                seen.add(attr.name)
                attrs.append({"key": attr.name, "value": _json_value(value)})
        if "status" in intrinsics:
            attrs.append(
                {"key": "status", "value": {"stringValue": _STATUS_NAMES.get(span.status, "unset")}}
            )
        if "kind" in intrinsics:
            kind = _KIND_NAMES.get(span.kind, "unspecified")
            attrs.append({"key": "kind", "value": {"stringValue": kind}})
        if "statusMessage" in intrinsics and span.status_message:
            attrs.append({"key": "statusMessage", "value": {"stringValue": span.status_message}})
        if attrs:
            out["attributes"] = attrs
        spans.append(out)
    return {"spans": spans, "matched": len(matched)}


def _tags_match(trace: TraceRow, tags: tuple[tuple[str, str], ...]) -> bool:
    for key, wanted in tags:
        needle = wanted.lower()
        found = False
        for span in trace.spans:
            if key == "name":
                found = needle in span.name.lower()
            elif key == "status.code":
                found = _STATUS_NAMES.get(span.status, "unset") == needle
            elif key == "error":
                found = span.status == 2 and needle == "true"
            else:
                value = span.attrs.get(key)
                if value is None:
                    value = span.resource.get(key)
                if value is not None:
                    found = needle in str(value).lower()
            if found:
                break
        if not found:
            return False
    return True
