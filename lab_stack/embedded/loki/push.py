"""Decoding of Loki push bodies: v1 JSON, the legacy ``/api/prom/push`` JSON, protobuf + snappy.

The protobuf schema (``pkg/push/push.proto``, package ``logproto``) is built at runtime with
``descriptor_pb2``, so no ``protoc`` is needed. Every failure raises :class:`PushError`, whose
message is the plain-text 400 (or 413) body.

Example:
    >>> body = b'{"streams":[{"stream":{"a":"b"},"values":[["1","hi"]]}]}'
    >>> decode_push(body, content_type="application/json", encoding="", legacy=False)
    [({'a': 'b'}, [(1, 'hi', None)])]
"""

from __future__ import annotations

import calendar
import json
import re
import zlib
from typing import Any

import cramjam
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2
from google.protobuf.message import DecodeError, Message

from .store import Entry

__all__ = [
    "MAX_BODY_BYTES",
    "PushError",
    "decode_push",
    "encode_push_proto",
    "parse_label_string",
    "parse_rfc3339",
    "push_request_class",
]

#: Largest accepted push body, compressed or decompressed.
MAX_BODY_BYTES = 16 * 1024 * 1024
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
MAX_LABEL_NAME = 1024
MAX_LABEL_VALUE = 2048
MAX_LABELS = 15


class PushError(ValueError):
    """A push body was rejected; ``status`` is 400 or 413."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _build_classes() -> type[Message]:
    pool = descriptor_pool.DescriptorPool()
    ts_file = descriptor_pb2.FileDescriptorProto()
    timestamp_pb2.DESCRIPTOR.CopyToProto(ts_file)
    pool.Add(ts_file)
    f = descriptor_pb2.FileDescriptorProto(
        name="pkg/push/push.proto",
        package="logproto",
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto"],
    )
    T = descriptor_pb2.FieldDescriptorProto
    opt, rep = T.LABEL_OPTIONAL, T.LABEL_REPEATED

    def msg(name: str, fields: list[tuple[str, int, int, int, str]]) -> None:
        m = f.message_type.add(name=name)
        for fname, num, ftype, label, type_name in fields:
            fd = m.field.add(name=fname, number=num, type=ftype, label=label)
            if type_name:
                fd.type_name = type_name

    msg("PushRequest", [("streams", 1, T.TYPE_MESSAGE, rep, ".logproto.StreamAdapter")])
    msg(
        "StreamAdapter",
        [
            ("labels", 1, T.TYPE_STRING, opt, ""),
            ("entries", 2, T.TYPE_MESSAGE, rep, ".logproto.EntryAdapter"),
            ("hash", 3, T.TYPE_UINT64, opt, ""),
        ],
    )
    msg(
        "EntryAdapter",
        [
            ("timestamp", 1, T.TYPE_MESSAGE, opt, ".google.protobuf.Timestamp"),
            ("line", 2, T.TYPE_STRING, opt, ""),
            ("structuredMetadata", 3, T.TYPE_MESSAGE, rep, ".logproto.LabelPairAdapter"),
        ],
    )
    msg(
        "LabelPairAdapter",
        [("name", 1, T.TYPE_STRING, opt, ""), ("value", 2, T.TYPE_STRING, opt, "")],
    )
    pool.Add(f)
    cls: type[Message] = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("logproto.PushRequest")
    )
    return cls


_PushRequest: type[Message] | None = None


def push_request_class() -> type[Message]:
    """The runtime-built ``logproto.PushRequest`` message class."""
    global _PushRequest
    if _PushRequest is None:
        _PushRequest = _build_classes()
    return _PushRequest


def encode_push_proto(
    streams: list[tuple[str, list[tuple[int, str, dict[str, str] | None]]]],
) -> bytes:
    """Encode ``(label string, entries)`` pairs as Promtail does: protobuf, then raw snappy."""
    req: Any = push_request_class()()
    for labels, entries in streams:
        s = req.streams.add(labels=labels)
        for ts, line, sm in entries:
            e = s.entries.add(line=line)
            e.timestamp.seconds, e.timestamp.nanos = divmod(ts, 1_000_000_000)
            for k, v in (sm or {}).items():
                e.structuredMetadata.add(name=k, value=v)
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


# -- helpers ---------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})$"
)


def parse_rfc3339(text: str) -> int | None:
    """Nanoseconds since the epoch of an RFC3339(Nano) timestamp, or None."""
    m = _RFC3339.match(text)
    if not m:
        return None
    y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 61):
        return None
    try:
        secs = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    frac = int((m.group(7) or "0").ljust(9, "0"))
    tz = m.group(8)
    if tz not in ("Z", "z"):
        sign = 1 if tz[0] == "+" else -1
        secs -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return secs * 1_000_000_000 + frac


_LABEL_PAIR = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|(?=\}))')


def parse_label_string(text: str) -> dict[str, str]:
    """Parse the Prometheus text form ``{a="b", c="d"}`` of a label set."""
    s = text.strip()
    if not (s.startswith("{") and s.endswith("}")):
        raise PushError(f'error parsing labels {text!r}: expected a {{name="value"}} label set')
    body = s[1:-1]
    labels: dict[str, str] = {}
    pos = 0
    while pos < len(body) and body[pos:].strip():
        m = _LABEL_PAIR.match(body + "}", pos)
        if not m or m.start() != pos:
            raise PushError(f"error parsing labels {text!r}: 1:{pos + 2}: parse error")
        try:
            value = json.loads('"' + m.group(2) + '"')
        except ValueError:
            raise PushError(f"error parsing labels {text!r}: invalid escape") from None
        labels[m.group(1)] = value
        pos = m.end()
    return labels


def _check_labels(labels: dict[str, str], where: str) -> dict[str, str]:
    labels = {k: v for k, v in labels.items() if v != ""}  # empty values mean "no label"
    if not labels:
        raise PushError("error at least one label pair is required per stream")
    if len(labels) > MAX_LABELS:
        raise PushError(f"stream '{where}' has {len(labels)} label names; limit {MAX_LABELS}")
    for k, v in labels.items():
        if not isinstance(k, str) or not _LABEL_NAME.match(k):
            raise PushError(f"error parsing labels {where!r}: invalid label name {k!r}")
        if not isinstance(v, str):
            raise PushError(f"error parsing labels {where!r}: value of {k!r} is not a string")
        if len(k) > MAX_LABEL_NAME:
            raise PushError(f"label name too long: {k[:64]!r}... for stream '{where[:128]}'")
        if len(v) > MAX_LABEL_VALUE:
            raise PushError(f"label value too long: {v[:64]!r}... for stream '{where[:128]}'")
    return labels


def _decompress(body: bytes, encoding: str) -> bytes:
    enc = encoding.strip().lower()
    if enc in ("", "identity", "snappy"):
        return body
    try:
        if enc == "gzip":
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif enc == "deflate":
            # RFC 9110 says zlib-wrapped; Loki (Go's flate) reads raw deflate: accept both.
            d = zlib.decompressobj(zlib.MAX_WBITS if body[:1] == b"\x78" else -zlib.MAX_WBITS)
        else:
            raise PushError(f"Content-Encoding {encoding!r} not supported")
        out = d.decompress(body, MAX_BODY_BYTES + 1)
        if len(out) > MAX_BODY_BYTES or d.unconsumed_tail:
            raise PushError(f"push body larger than {MAX_BODY_BYTES} bytes when decompressed", 413)
        if not d.eof:
            raise PushError(f"{enc} body is truncated")
        return out
    except zlib.error as exc:
        raise PushError(f"{enc}: invalid compressed body: {exc}") from None


def _ts_string(value: object) -> int:
    if not isinstance(value, str):
        raise PushError(
            "loghttp.PushRequest.Streams: []*loghttp.Stream: unmarshalerDecoder: "
            f"timestamp must be a string of nanoseconds, got {json.dumps(value)[:64]}"
        )
    if not value.isdigit() or len(value) > 19:
        raise PushError(f"invalid timestamp {value[:64]!r}: expected nanoseconds as a string")
    return int(value)


def _v1(doc: object) -> list[tuple[dict[str, str], list[Entry]]]:
    if not isinstance(doc, dict) or not isinstance(doc.get("streams", []), list):
        raise PushError('loghttp.PushRequest: expected an object with a "streams" array')
    out: list[tuple[dict[str, str], list[Entry]]] = []
    for s in doc.get("streams") or []:
        if not isinstance(s, dict):
            raise PushError("loghttp.PushRequest.Streams: each stream must be an object")
        labels = s.get("stream")
        if labels is None:
            labels = {}
        if not isinstance(labels, dict):
            raise PushError("loghttp.Stream.stream: expected an object of label names to values")
        where = json.dumps(labels)[:256]
        labels = _check_labels(labels, where)
        values = s.get("values") or []
        if not isinstance(values, list):
            raise PushError("loghttp.Stream.values: expected an array")
        entries: list[Entry] = []
        for v in values:
            if not isinstance(v, list) or len(v) not in (2, 3):
                raise PushError('loghttp.Entry: expected ["<ns>", "<line>"(, {metadata})]')
            ts = _ts_string(v[0])
            line = v[1]
            if not isinstance(line, str):
                raise PushError("loghttp.Entry: the line must be a string")
            sm: dict[str, str] | None = None
            if len(v) == 3:
                meta = v[2]
                if not isinstance(meta, dict) or not all(
                    isinstance(k, str) and isinstance(x, str) for k, x in meta.items()
                ):
                    raise PushError(
                        "loghttp.Entry: structured metadata must map strings to strings"
                    )
                sm = {k: x for k, x in meta.items() if x} or None
                for k in sm or {}:
                    if not _LABEL_NAME.match(k):
                        raise PushError(f"invalid structured metadata name {k[:64]!r}")
            entries.append((ts, line, sm))
        out.append((labels, entries))
    return out


def _legacy(doc: object) -> list[tuple[dict[str, str], list[Entry]]]:
    if not isinstance(doc, dict) or not isinstance(doc.get("streams", []), list):
        raise PushError('logproto.PushRequest: expected an object with a "streams" array')
    out: list[tuple[dict[str, str], list[Entry]]] = []
    for s in doc.get("streams") or []:
        if not isinstance(s, dict) or not isinstance(s.get("labels", ""), str):
            raise PushError('logproto.Stream: expected {"labels": "{...}", "entries": [...]}')
        text = s.get("labels", "")
        labels = _check_labels(parse_label_string(text), text)
        raw_entries = s.get("entries") or []
        if not isinstance(raw_entries, list):
            raise PushError("logproto.Stream.entries: expected an array")
        entries: list[Entry] = []
        for e in raw_entries:
            if not isinstance(e, dict):
                raise PushError('logproto.Entry: expected {"ts": "RFC3339", "line": "..."}')
            ts_raw, line = e.get("ts", e.get("timestamp")), e.get("line", "")
            ts = parse_rfc3339(ts_raw) if isinstance(ts_raw, str) else None
            if ts is None:
                raise PushError(f"logproto.Entry.ts: cannot parse {str(ts_raw)[:64]!r} as RFC3339")
            if not isinstance(line, str):
                raise PushError("logproto.Entry.line: expected a string")
            entries.append((ts, line, None))
        out.append((labels, entries))
    return out


def _proto(body: bytes) -> list[tuple[dict[str, str], list[Entry]]]:
    try:
        size = cramjam.snappy.decompress_raw_len(body)
    except Exception:
        raise PushError("snappy: corrupt input") from None
    if size > MAX_BODY_BYTES:
        raise PushError(f"push body larger than {MAX_BODY_BYTES} bytes when decompressed", 413)
    try:
        raw = bytes(cramjam.snappy.decompress_raw(body))
    except Exception:
        raise PushError("snappy: corrupt input") from None
    req: Any = push_request_class()()
    try:
        req.ParseFromString(raw)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise PushError(f"proto: cannot decode PushRequest: {exc}") from None
    out: list[tuple[dict[str, str], list[Entry]]] = []
    for s in req.streams:
        labels = _check_labels(parse_label_string(s.labels), s.labels)
        entries: list[Entry] = []
        for e in s.entries:
            ts = e.timestamp.seconds * 1_000_000_000 + e.timestamp.nanos
            sm = {p.name: p.value for p in e.structuredMetadata if p.value} or None
            entries.append((ts, e.line, sm))
        out.append((labels, entries))
    return out


def decode_push(
    body: bytes, *, content_type: str, encoding: str, legacy: bool
) -> list[tuple[dict[str, str], list[Entry]]]:
    """Decode a push body into ``(labels, entries)`` pairs; raise :class:`PushError` if bad."""
    if len(body) > MAX_BODY_BYTES:
        raise PushError(f"push body larger than {MAX_BODY_BYTES} bytes", 413)
    media = content_type.split(";", 1)[0].strip().lower()
    if not media:
        raise PushError("mime: no media type")
    data = _decompress(body, encoding)
    if media == "application/json":
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise PushError(f"loghttp.PushRequest: invalid JSON: {exc}"[:512]) from None
        return _legacy(doc) if legacy else _v1(doc)
    return _proto(data)
