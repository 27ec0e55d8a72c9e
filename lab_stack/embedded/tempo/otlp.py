"""Decoding OTLP trace exports (protobuf and OTLP/JSON, gzip) and Tempo's trace-id parsing.

OTLP/JSON writes ``traceId``/``spanId`` as hex, but ``json_format.ParseDict`` reads ``bytes`` fields
as base64 and silently turns a 32-character hex id into 24 wrong bytes; the ids are therefore
converted before parsing.

Example:
    >>> hex_string_to_trace_id("abc").hex()
    '00000000000000000000000000000abc'
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

__all__ = [
    "BadRequest",
    "decode_export",
    "decompress",
    "hex_string_to_trace_id",
    "trace_id_to_hex_string",
]

_ID_KEYS = ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id")


class BadRequest(ValueError):
    """A request body or parameter was rejected; the message is the 4xx body."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def decompress(body: bytes, encoding: str, *, limit: int) -> bytes:
    """Undo ``Content-Encoding`` (gzip, deflate or identity), refusing more than ``limit`` bytes."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise BadRequest(
            f"Content-Encoding {encoding!r} is not supported. Hint: send gzip or no compression.",
            status=415,
        )
    wbits = 16 + zlib.MAX_WBITS if encoding in ("gzip", "x-gzip") else zlib.MAX_WBITS
    try:
        d = zlib.decompressobj(wbits)
        out = d.decompress(body, limit + 1)
        if len(out) > limit or d.unconsumed_tail:
            raise BadRequest(
                f"the decompressed body exceeds {limit} bytes. Hint: send smaller batches.",
                status=413,
            )
        if not d.eof:
            raise BadRequest(f"the {encoding} body is truncated. Hint: check the compression.")
    except zlib.error as exc:
        if encoding == "deflate":  # some clients send raw deflate without the zlib header
            try:
                d = zlib.decompressobj(-zlib.MAX_WBITS)
                out = d.decompress(body, limit + 1)
                if len(out) <= limit and d.eof:
                    return out
            except zlib.error:
                pass
        raise BadRequest(f"the {encoding} body cannot be decompressed: {exc}.") from None
    return out


def _hex_to_b64(value: object, key: str) -> object:
    if not isinstance(value, str):
        raise BadRequest(f"{key} must be a hex string, got {type(value).__name__}.")
    if value == "":
        return value
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise BadRequest(
            f"{key} {value[:64]!r} is not hex. Hint: OTLP/JSON writes ids as hex, not base64."
        ) from None
    return base64.b64encode(raw).decode("ascii")


def _fix_ids(node: dict[str, Any]) -> None:
    for key in _ID_KEYS:
        if key in node:
            node[key] = _hex_to_b64(node[key], key)


def _children(node: dict[str, Any], *keys: str) -> list[dict[str, Any]]:
    for key in keys:
        value = node.get(key)
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise BadRequest(f"{key} must be a list of objects.")
        return value
    return []


def _convert_hex_ids(doc: Any) -> None:
    if not isinstance(doc, dict):
        raise BadRequest("the OTLP/JSON body must be an object with resourceSpans.")
    for rs in _children(doc, "resourceSpans", "resource_spans"):
        for ss in _children(rs, "scopeSpans", "scope_spans"):
            for span in _children(ss, "spans"):
                _fix_ids(span)
                for link in _children(span, "links"):
                    _fix_ids(link)


def decode_export(body: bytes, content_type: str) -> tuple[ExportTraceServiceRequest, bool]:
    """Parse an export body; return the request and whether it was JSON."""
    mime = content_type.split(";", 1)[0].strip().lower()
    request = ExportTraceServiceRequest()
    if mime == "application/json":
        try:
            doc = json.loads(body)
            _convert_hex_ids(doc)
            json_format.ParseDict(doc, request, ignore_unknown_fields=True)
        except BadRequest:
            raise
        except (ValueError, RecursionError, json_format.ParseError, TypeError) as exc:
            raise BadRequest(f"the OTLP/JSON body cannot be parsed: {str(exc)[:300]}") from None
        return request, True
    if mime in ("application/x-protobuf", "application/protobuf"):
        try:
            request.ParseFromString(body)
        except (DecodeError, RecursionError, ValueError) as exc:
            raise BadRequest(f"the OTLP protobuf body cannot be parsed: {str(exc)[:300]}") from None
        return request, False
    raise BadRequest(
        f"Content-Type {content_type!r} is not supported. Hint: send application/x-protobuf "
        "or application/json.",
        status=415,
    )


def hex_string_to_trace_id(text: str) -> bytes:
    """Parse a trace id as Tempo's ``util.HexStringToTraceID`` does (left-padded to 16 bytes)."""
    for pos, ch in enumerate(text):
        if ch not in "0123456789abcdefABCDEF":
            raise BadRequest(
                f"trace IDs can only contain hex characters: invalid character '{ch}' at "
                f"position {pos + 1}"
            )
    if len(text) % 2:
        text = "0" + text
    try:
        raw = binascii.unhexlify(text)
    except binascii.Error as exc:  # pragma: no cover - characters were checked above
        raise BadRequest(str(exc)) from None
    if len(raw) > 16:
        raise BadRequest("trace IDs can't be larger than 128 bits")
    return raw.rjust(16, b"\0")


def trace_id_to_hex_string(trace_id: bytes) -> str:
    """Hex with leading zeros trimmed, as Tempo's ``util.TraceIDToHexString``."""
    return trace_id.hex().lstrip("0")
