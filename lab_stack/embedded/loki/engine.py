"""The LogQL evaluator of the embedded Loki: log pipelines, range and vector aggregations.

Window semantics follow Loki 2.9: a log query selects ``start <= ts < end``; a range aggregation
evaluated at step ``t`` sees entries with ``t - offset - range < ts <= t - offset``; steps run from
``start`` to ``end`` inclusive. Queries whose pipeline is only line filters take a vectorised path
(``str.find`` over a chunk's joined text, numpy ``searchsorted`` over its timestamps).

Example:
    >>> from lab_stack.embedded.loki.store import LokiStore
    >>> store = LokiStore()
    >>> _ = store.ingest([({"app": "a"}, [(10**9, "boom", None), (2 * 10**9, "ok", None)])])
    >>> streams = run_log_query(store, parse('{app="a"} |= "boom"'), 0, 3 * 10**9, 100, "backward")
    >>> [(labels, [line for _, line, _ in entries]) for labels, entries in streams]
    [({'app': 'a'}, ['boom'])]
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .logql import (
    NS,
    BinOp,
    Grouping,
    JsonStage,
    KeepDrop,
    LabelFilter,
    LabelFormat,
    LFBinary,
    LFExpr,
    LineFilter,
    LineFormat,
    LogfmtStage,
    LogQLError,
    LogQuery,
    NumberLit,
    RangeAgg,
    RegexpStage,
    Stage,
    VectorAgg,
    VectorLit,
    parse,
    parse_bytes,
    parse_go_duration,
)
from .store import Chunk, Entry, LokiStore, Stream, labels_key

__all__ = [
    "Matrix",
    "QueryStats",
    "format_value",
    "run_log_query",
    "run_metric_query",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
ERR = "__error__"
ERR_DETAILS = "__error_details__"
_SANITIZE = re.compile(r"[^a-zA-Z0-9_]")


@dataclass
class QueryStats:
    """Counters reported in the response's ``stats.summary``."""

    lines: int = 0
    bytes: int = 0
    returned: int = 0


class _NumStr(str):
    """A JSON number kept as its original text."""


def _num(text: str) -> _NumStr:
    return _NumStr(text)


def _sanitize(key: str) -> str:
    key = _SANITIZE.sub("_", key)
    if key and key[0].isdigit():
        key = "_" + key
    return key


# -- parsers --------------------------------------------------------------------------------------


def _json_value(v: object) -> str | None:
    if isinstance(v, str):
        return str(v)
    if v is None:
        return ""
    if v is True:
        return "true"
    if v is False:
        return "false"
    return json.dumps(v, separators=(",", ":"))


def _flatten(obj: dict[str, object], prefix: str, out: dict[str, str]) -> None:
    for k, v in obj.items():
        key = _sanitize(k)
        if not key:
            continue
        full = f"{prefix}_{key}" if prefix else key
        if isinstance(v, dict):
            _flatten(v, full, out)
        elif isinstance(v, list):
            continue
        else:
            value = _json_value(v)
            if value is not None:
                out.setdefault(full, value)


def _json_stage(stage: JsonStage, line: str, labels: dict[str, str], base: dict[str, str]) -> None:
    try:
        obj = json.loads(line, parse_int=_num, parse_float=_num)
    except (ValueError, RecursionError) as exc:
        labels[ERR] = "JSONParserErr"
        labels[ERR_DETAILS] = str(exc)
        return
    if not isinstance(obj, dict):
        labels[ERR] = "JSONParserErr"
        labels[ERR_DETAILS] = "Value looks like object, but can't find closing '}' symbol"
        return
    extracted: dict[str, str] = {}
    if not stage.params:
        _flatten(obj, "", extracted)
    else:
        for label, path in stage.params:
            cur: object = obj
            for part in path:
                if (isinstance(part, int) and isinstance(cur, list) and part < len(cur)) or (
                    isinstance(part, str) and isinstance(cur, dict) and part in cur
                ):
                    cur = cur[part]  # type: ignore[index]
                else:
                    cur = None
                    break
            value = _json_value(cur) if cur is not None else ""
            extracted[label] = value or ""
    for k, v in extracted.items():
        labels[k + "_extracted" if k in base else k] = v


def _logfmt_pairs(line: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] <= " ":
            i += 1
        if i >= n:
            break
        start = i
        while i < n and line[i] > " " and line[i] != "=":
            if line[i] == '"':
                raise ValueError(f"logfmt syntax error at pos {i + 1}: unexpected '\"'")
            i += 1
        key = line[start:i]
        if not key:
            raise ValueError(f"logfmt syntax error at pos {i + 1}: unexpected '='")
        if i >= n or line[i] != "=":
            pairs.append((key, ""))
            continue
        i += 1
        if i < n and line[i] == '"':
            j = i + 1
            escaped = False
            while j < n:
                c = line[j]
                if escaped:
                    escaped = False
                elif c == "\\":
                    escaped = True
                elif c == '"':
                    break
                j += 1
            if j >= n:
                raise ValueError(f"logfmt syntax error at pos {n + 1}: unterminated quoted value")
            try:
                value = json.loads(line[i : j + 1])
            except ValueError:
                value = line[i + 1 : j]
            pairs.append((key, value))
            i = j + 1
        else:
            start = i
            while i < n and line[i] > " ":
                if line[i] == '"':
                    raise ValueError(f"logfmt syntax error at pos {i + 1}: unexpected '\"'")
                i += 1
            pairs.append((key, line[start:i]))
    return pairs


def _logfmt_stage(
    stage: LogfmtStage, line: str, labels: dict[str, str], base: dict[str, str]
) -> None:
    try:
        pairs = _logfmt_pairs(line)
    except ValueError as exc:
        labels[ERR] = "LogfmtParserErr"
        labels[ERR_DETAILS] = str(exc)
        return
    found = {}
    for k, v in pairs:
        key = _sanitize(k)
        if key and v != "":
            found[key] = v
    if stage.params:
        found = {label: found.get(_sanitize(src), "") for label, src in stage.params}
    for k, v in found.items():
        labels[k + "_extracted" if k in base else k] = v


def _template(parts: list[tuple[bool, str]], labels: dict[str, str], line: str, ts: int) -> str:
    out = []
    for is_label, text in parts:
        if not is_label:
            out.append(text)
        elif text == "__line__":
            out.append(line)
        elif text == "__timestamp__":
            out.append(str(ts))
        else:
            out.append(labels.get(text, ""))
    return "".join(out)


def _lf_eval(expr: LFExpr, labels: dict[str, str]) -> bool:
    if isinstance(expr, LFBinary):
        if expr.op == "and":
            return _lf_eval(expr.left, labels) and _lf_eval(expr.right, labels)
        return _lf_eval(expr.left, labels) or _lf_eval(expr.right, labels)
    if expr.kind == "string":
        assert expr.matcher is not None
        return expr.matcher.matches(labels.get(expr.name, ""))
    raw = labels.get(expr.name)
    if raw is None:
        return False
    value: float | None
    if expr.kind == "number":
        try:
            value = float(raw) if raw.strip() == raw and "_" not in raw else None
        except ValueError:
            value = None
    elif expr.kind == "duration":
        d = parse_go_duration(raw)
        value = None if d is None else float(d)
    else:
        value = parse_bytes(raw)
    if value is None:
        labels[ERR] = "LabelFilterErr"
        labels[ERR_DETAILS] = f"cannot convert {raw!r} for the {expr.kind} filter on {expr.name}"
        return True
    target = float(expr.value)
    op = expr.op
    if op == "==":
        return value == target
    if op == "!=":
        return value != target
    if op == ">":
        return value > target
    if op == ">=":
        return value >= target
    if op == "<":
        return value < target
    return value <= target


def _line_filter_ok(f: LineFilter, line: str) -> bool:
    if f.op in ("|=", "!="):
        hit = any(v in line for v in f.values)
    else:
        hit = any(r.search(line) is not None for r in f.regexes)
    return hit if f.op in ("|=", "|~") else not hit


def _process(
    stages: Sequence[Stage], base: dict[str, str], ts: int, line: str, sm: dict[str, str] | None
) -> tuple[dict[str, str], str] | None:
    """Run one entry through a pipeline; None when a stage filters it out."""
    labels = dict(base)
    if sm:
        labels.update(sm)
    for st in stages:
        if isinstance(st, LineFilter):
            if not _line_filter_ok(st, line):
                return None
        elif isinstance(st, LabelFilter):
            if not _lf_eval(st.expr, labels):
                return None
        elif isinstance(st, JsonStage):
            _json_stage(st, line, labels, base)
        elif isinstance(st, LogfmtStage):
            _logfmt_stage(st, line, labels, base)
        elif isinstance(st, RegexpStage):
            m = st.regex.search(line)
            if m is None:
                continue
            for name, value in m.groupdict().items():
                if value:
                    labels[_sanitize(name) + ("_extracted" if name in base else "")] = value
        elif isinstance(st, LineFormat):
            line = _template(st.parts, labels, line, ts)
        elif isinstance(st, LabelFormat):
            snapshot = dict(labels)
            for dst, src, parts in st.items:
                if parts is not None:
                    labels[dst] = _template(parts, snapshot, line, ts)
                else:
                    assert src is not None
                    value = snapshot.get(src, "")
                    labels.pop(src, None)
                    if value:
                        labels[dst] = value
        elif isinstance(st, KeepDrop):
            if st.keep:
                labels = {k: v for k, v in labels.items() if k in st.names or k == ERR}
            else:
                for name in st.names:
                    labels.pop(name, None)
    return {k: v for k, v in labels.items() if v != ""}, line


# -- candidate selection (vectorised line filters) -----------------------------------------------

_LITERAL = re.compile(r"[^\\.^$*+?()\[\]{}|]*")


def _literal(f: LineFilter) -> list[str] | None:
    """The plain substrings a filter looks for, when it needs no regex."""
    if f.op in ("|=", "!="):
        return f.values
    if all(_LITERAL.fullmatch(v) for v in f.values):
        return f.values
    return None


_UNSAFE_JOINED = re.compile(r"\\[AZzb]|\(\?<[=!]|\(\?[a-zA-Z]*s")


@functools.lru_cache(maxsize=256)
def _multiline_compile(pattern: str) -> re.Pattern[str] | None:
    if _UNSAFE_JOINED.search(pattern):
        return None  # anchors, lookbehinds or dotall behave differently over joined text
    try:
        return re.compile(pattern, re.MULTILINE)
    except re.error:
        return None


def _multiline(regex: re.Pattern[str]) -> re.Pattern[str] | None:
    """The regex compiled to scan a chunk's joined text with per-line anchors, if safe."""
    if regex.flags & (re.DOTALL | re.MULTILINE):
        return None
    return _multiline_compile(regex.pattern)


def _candidates(
    chunk: Chunk, lo: int, hi: int, filters: Sequence[LineFilter]
) -> tuple[I64, list[str] | None]:
    """Indexes in ``[lo, hi)`` that pass every line filter, and the window's lines if read."""
    idx: I64 = np.arange(lo, hi, dtype=np.int64)
    lines: list[str] | None = None
    for f in filters:
        if len(idx) == 0:
            break
        needles = _literal(f)
        positive = f.op in ("|=", "|~")
        if needles is not None:
            hits = np.unique(np.concatenate([chunk.find(v, lo, hi) for v in needles]))
            mask = np.isin(idx, hits, assume_unique=True)
            idx = idx[mask] if positive else idx[~mask]
        else:
            joined = [_multiline(r) for r in f.regexes]
            found = [chunk.find_regex(r, lo, hi) if r is not None else None for r in joined]
            if all(x is not None for x in found):
                hits = np.unique(np.concatenate([x for x in found if x is not None]))
                mask = np.isin(idx, hits, assume_unique=True)
                idx = idx[mask] if positive else idx[~mask]
                continue
            if lines is None:
                lines = chunk.lines(lo, hi)
            regexes = f.regexes
            keep = [
                i
                for i in idx.tolist()
                if any(r.search(lines[i - lo]) is not None for r in regexes) == positive
            ]
            idx = np.asarray(keep, dtype=np.int64)
    return idx, lines


def _split_stages(q: LogQuery) -> tuple[list[LineFilter], list[Stage]]:
    lead: list[LineFilter] = []
    for i, st in enumerate(q.stages):
        if not isinstance(st, LineFilter):
            return lead, list(q.stages[i:])
        lead.append(st)
    return lead, []


@dataclass
class _Hit:
    stream: Stream
    chunk: Chunk
    idx: I64  # sorted entry indexes in chunk


def _scan(
    store: LokiStore, q: LogQuery, start_ns: int, end_ns: int, stats: QueryStats
) -> tuple[list[_Hit], list[Stage]]:
    """Entries in ``[start_ns, end_ns)`` of matching streams passing the leading line filters."""
    lead, rest = _split_stages(q)
    hits: list[_Hit] = []
    for stream in store.select(q.matchers):
        if not stream.overlaps(start_ns, end_ns - 1):
            continue
        for chunk in stream.all_chunks():
            if chunk.max_ts < start_ns or chunk.min_ts >= end_ns:
                continue
            lo, hi = chunk.window(start_ns, end_ns)
            if lo >= hi:
                continue
            stats.lines += hi - lo
            stats.bytes += int(chunk.offsets[hi] - chunk.offsets[lo]) - (hi - lo)
            idx, _ = _candidates(chunk, lo, hi, lead)
            if len(idx):
                hits.append(_Hit(stream, chunk, idx))
    return hits, rest


# -- log queries -------------------------------------------------------------------------------

StreamResult = tuple[dict[str, str], list[Entry]]


def run_log_query(
    store: LokiStore,
    q: LogQuery,
    start_ns: int,
    end_ns: int,
    limit: int,
    direction: str,
    stats: QueryStats | None = None,
) -> list[StreamResult]:
    """Evaluate a log query over ``[start_ns, end_ns)``: at most ``limit`` entries."""
    stats = stats if stats is not None else QueryStats()
    hits, rest = _scan(store, q, start_ns, end_ns, stats)
    backward = direction == "backward"
    selected: list[tuple[int, str, dict[str, str], dict[str, str] | None]] = []
    if not rest:
        # Pick the limit newest/oldest candidates across all chunks with numpy, then read them.
        if hits:
            all_ts = np.concatenate([h.chunk.ts[h.idx] for h in hits])
            owner = np.concatenate([np.full(len(h.idx), n) for n, h in enumerate(hits)])
            pos = np.concatenate([h.idx for h in hits])
            order = np.argsort(-all_ts if backward else all_ts, kind="stable")[:limit]
            for k in order.tolist():
                h = hits[int(owner[k])]
                i = int(pos[k])
                sm = h.chunk.sm.get(i)
                labels = {**h.stream.labels, **sm} if sm else h.stream.labels
                selected.append((int(all_ts[k]), h.chunk.line(i), labels, sm))
    else:
        per_stream: dict[int, list[_Hit]] = {}
        for h in hits:
            per_stream.setdefault(id(h.stream), []).append(h)
        for group in per_stream.values():
            stream = group[0].stream
            cands = [(int(h.chunk.ts[i]), h, int(i)) for h in group for i in h.idx.tolist()]
            cands.sort(key=lambda c: c[0], reverse=backward)
            taken = 0
            for ts, h, i in cands:
                sm = h.chunk.sm.get(i)
                out = _process(rest, stream.labels, ts, h.chunk.line(i), sm)
                if out is None:
                    continue
                selected.append((ts, out[1], out[0], sm))
                taken += 1
                if taken >= limit:
                    break
        selected.sort(key=lambda e: e[0], reverse=backward)
        del selected[limit:]
    streams: dict[str, StreamResult] = {}
    for ts, line, labels, sm in selected:
        key = labels_key(labels)
        if key not in streams:
            streams[key] = (labels, [])
        streams[key][1].append((ts, line, sm))
    stats.returned = len(selected)
    return [streams[k] for k in sorted(streams)]


# -- metric queries -----------------------------------------------------------------------------


@dataclass
class Matrix:
    """Series over the query's steps; NaN marks a step without a sample."""

    steps: I64
    series: dict[str, tuple[dict[str, str], F64]]


Value = Matrix | F64  # a scalar expression is one value per step


_Parts = dict[str, tuple[dict[str, str], list[I64], list[F64]]]


def _samples(
    store: LokiStore, agg: RangeAgg, start_ns: int, end_ns: int, stats: QueryStats
) -> _Parts:
    """Per series: (labels, timestamp arrays, value arrays) of the samples an aggregation reads."""
    lo_ns = start_ns - agg.offset_ns - agg.range_ns + 1
    hi_ns = end_ns - agg.offset_ns + 1
    hits, rest = _scan(store, agg.log, lo_ns, hi_ns, stats)
    series: _Parts = {}
    unwrap = agg.unwrap
    byte_ops = agg.op in ("bytes_over_time", "bytes_rate")

    def add(labels: dict[str, str], ts: I64, values: F64) -> None:
        key = labels_key(labels)
        if key not in series:
            series[key] = (labels, [], [])
        series[key][1].append(ts)
        series[key][2].append(values)

    if not rest and unwrap is None:
        for h in hits:
            idx = h.idx
            if h.chunk.sm:
                with_sm = [i for i in idx.tolist() if i in h.chunk.sm]
                for i in with_sm:
                    value = float(h.chunk.byte_lengths()[i]) if byte_ops else 1.0
                    add(
                        {**h.stream.labels, **h.chunk.sm[i]},
                        np.asarray([h.chunk.ts[i]], dtype=np.int64),
                        np.asarray([value]),
                    )
                if with_sm:
                    idx = np.setdiff1d(idx, np.asarray(with_sm, dtype=np.int64))
            ts_arr = h.chunk.ts[idx]
            if byte_ops:
                values = h.chunk.byte_lengths()[idx].astype(np.float64)
            else:
                values = np.ones(len(ts_arr), dtype=np.float64)
            add(h.stream.labels, ts_arr, values)
        return series
    slow: dict[str, tuple[dict[str, str], list[int], list[float]]] = {}
    for h in hits:
        for i in h.idx.tolist():
            ts = int(h.chunk.ts[i])
            line = h.chunk.line(i)
            sm = h.chunk.sm.get(i)
            out = _process(rest, h.stream.labels, ts, line, sm)
            if out is None:
                continue
            labels, line = out
            if unwrap is None:
                value = float(len(line.encode("utf-8", "surrogatepass"))) if byte_ops else 1.0
            else:
                raw = labels.pop(unwrap.label, "")
                if raw == "":
                    continue
                converted: float | None
                if unwrap.conv == "duration":
                    d = parse_go_duration(raw)
                    converted = None if d is None else d / NS
                elif unwrap.conv == "bytes":
                    converted = parse_bytes(raw)
                else:
                    try:
                        converted = float(raw)
                    except ValueError:
                        converted = None
                if converted is None:
                    labels[ERR] = "SampleExtractionErr"
                    labels[ERR_DETAILS] = f"strconv.ParseFloat: parsing {raw!r}: invalid syntax"
                    converted = 0.0
                value = converted
                if not all(_lf_eval(f.expr, labels) for f in unwrap.filters):
                    continue
            key = labels_key(labels)
            if key not in slow:
                slow[key] = (labels, [], [])
            slow[key][1].append(ts)
            slow[key][2].append(value)
    for labels, ts_list, vs_list in slow.values():
        add(labels, np.asarray(ts_list, dtype=np.int64), np.asarray(vs_list, dtype=np.float64))
    return series


def _group_labels(labels: dict[str, str], grouping: Grouping | None) -> dict[str, str]:
    if grouping is None:
        return {}
    if grouping.without:
        return {k: v for k, v in labels.items() if k not in grouping.labels}
    return {k: v for k, v in labels.items() if k in grouping.labels}


def _quantile(q: float, values: list[float]) -> float:
    if not values:
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    vs = sorted(values)
    n = len(vs)
    rank = q * (n - 1)
    lower = max(0, math.floor(rank))
    upper = min(n - 1, lower + 1)
    weight = rank - math.floor(rank)
    return vs[lower] * (1 - weight) + vs[upper] * weight


def _over_time(op: str, vs: list[float], param: float | None, range_s: float) -> float:
    if op in ("sum_over_time", "rate"):
        total = 0.0
        for v in vs:
            total += v
        return total / range_s if op == "rate" else total
    if op == "avg_over_time":
        mean, count = 0.0, 0.0
        for v in vs:
            count += 1
            if math.isinf(mean):
                if math.isinf(v) and (mean > 0) == (v > 0):
                    continue
                if not math.isinf(v) and not math.isnan(v):
                    continue
            mean += v / count - mean / count
        return mean
    if op == "min_over_time":
        return min(vs)
    if op == "max_over_time":
        return max(vs)
    if op == "first_over_time":
        return vs[0]
    if op == "last_over_time":
        return vs[-1]
    if op == "quantile_over_time":
        assert param is not None
        return _quantile(param, vs)
    aux, count, mean = 0.0, 0.0, 0.0
    for v in vs:
        count += 1
        delta = v - mean
        mean += delta / count
        aux += delta * (v - mean)
    return math.sqrt(aux / count) if op == "stddev_over_time" else aux / count


def _range_agg(store: LokiStore, agg: RangeAgg, steps: I64, stats: QueryStats) -> Matrix:
    raw = _samples(store, agg, int(steps[0]), int(steps[-1]), stats)
    for labels, _, _ in raw.values():
        if ERR in labels:
            _pipeline_error(labels)
    if agg.grouping is not None:
        grouped: _Parts = {}
        for labels, ts_parts, vs_parts in raw.values():
            g = _group_labels(labels, agg.grouping)
            key = labels_key(g)
            if key not in grouped:
                grouped[key] = (g, [], [])
            grouped[key][1].extend(ts_parts)
            grouped[key][2].extend(vs_parts)
        raw = grouped
    range_s = agg.range_ns / NS
    ends = steps - agg.offset_ns
    begins = ends - agg.range_ns
    out: dict[str, tuple[dict[str, str], F64]] = {}
    for key, (labels, ts_parts, vs_parts) in raw.items():
        ts = np.concatenate(ts_parts) if len(ts_parts) > 1 else ts_parts[0]
        vs = np.concatenate(vs_parts) if len(vs_parts) > 1 else vs_parts[0]
        if len(ts) > 1 and np.any(ts[1:] < ts[:-1]):
            order = np.argsort(ts, kind="stable")
            ts, vs = ts[order], vs[order]
        lo = np.searchsorted(ts, begins, side="right")
        hi = np.searchsorted(ts, ends, side="right")
        count = (hi - lo).astype(np.float64)
        with np.errstate(all="ignore"):
            if agg.unwrap is None:
                if agg.op in ("count_over_time", "rate"):
                    values = count
                else:
                    cs = np.concatenate([[0.0], np.cumsum(vs)])
                    values = cs[hi] - cs[lo]
                if agg.op in ("rate", "bytes_rate"):
                    values = values / range_s
            else:
                values = np.full(len(steps), np.nan)
                vlist = vs.tolist()
                for k, (a, b) in enumerate(zip(lo.tolist(), hi.tolist(), strict=True)):
                    if b > a:
                        values[k] = _over_time(agg.op, vlist[a:b], agg.param, range_s)
            values = np.where(count > 0, values, np.nan)
        if not np.all(np.isnan(values)):
            out[key] = (labels, values)
    return Matrix(steps, out)


def _pipeline_error(labels: dict[str, str]) -> None:
    err = labels[ERR]
    shown = {k: v for k, v in labels.items() if k != ERR_DETAILS}
    raise LogQLError(
        f"pipeline error: '{err}' for series: '{labels_key(shown)}'.\n"
        f'Use a label filter to intentionally skip this error. (e.g | __error__!="{err}").\n'
        'To skip all potential errors you can match empty errors.(e.g __error__="")\n'
        "The label filter can also be specified after unwrap. "
        '(e.g | unwrap latency | __error__="" )\n'
    )


def _vector_agg(agg: VectorAgg, inner: Matrix) -> Matrix:
    nsteps = len(inner.steps)
    groups: dict[str, tuple[dict[str, str], list[tuple[dict[str, str], F64]]]] = {}
    for key in sorted(inner.series):
        labels, values = inner.series[key]
        g = _group_labels(labels, agg.grouping)
        gkey = labels_key(g)
        if gkey not in groups:
            groups[gkey] = (g, [])
        groups[gkey][1].append((labels, values))
    out: dict[str, tuple[dict[str, str], F64]] = {}
    if agg.op in ("topk", "bottomk"):
        k = int(agg.param or 0)
        for _, members in groups.values():
            stacked = np.vstack([v for _, v in members])
            for step in range(nsteps):
                col = stacked[:, step]
                present = [i for i in range(len(members)) if not math.isnan(col[i])]
                present.sort(key=lambda i: col[i], reverse=agg.op == "topk")
                for i in present[:k]:
                    labels = members[i][0]
                    key = labels_key(labels)
                    if key not in out:
                        out[key] = (labels, np.full(nsteps, np.nan))
                    out[key][1][step] = col[i]
        return Matrix(inner.steps, out)
    for gkey, (g, members) in groups.items():
        result = np.full(nsteps, np.nan)
        stacked = np.vstack([v for _, v in members])
        for step in range(nsteps):
            vals = [float(x) for x in stacked[:, step].tolist() if not math.isnan(x)]
            if not vals:
                continue
            if agg.op == "sum":
                total = 0.0
                for x in vals:
                    total += x
                result[step] = total
            elif agg.op == "count":
                result[step] = float(len(vals))
            elif agg.op == "min":
                result[step] = min(vals)
            elif agg.op == "max":
                result[step] = max(vals)
            elif agg.op == "avg":
                mean = 0.0
                for n, x in enumerate(vals, start=1):
                    mean += x / n - mean / n
                result[step] = mean
            else:
                mean = sum(vals) / len(vals)
                var = sum((x - mean) ** 2 for x in vals) / len(vals)
                result[step] = math.sqrt(var) if agg.op == "stddev" else var
        if not np.all(np.isnan(result)):
            out[gkey] = (g, result)
    return Matrix(inner.steps, out)


_ARITH: dict[str, Callable[[F64, F64], F64]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.divide,
    "%": np.fmod,
    "^": np.power,
}
_CMP: dict[str, Callable[[F64, F64], npt.NDArray[np.bool_]]] = {
    "==": np.equal,
    "!=": np.not_equal,
    ">": np.greater,
    ">=": np.greater_equal,
    "<": np.less,
    "<=": np.less_equal,
}


def _apply(op: str, a: F64, b: F64, bool_mod: bool, keep: F64) -> F64:
    with np.errstate(all="ignore"):
        if op in _ARITH:
            return _ARITH[op](a, b)
        cond = _CMP[op](a, b)
        missing = np.isnan(a) | np.isnan(b)
        if bool_mod:
            return np.where(missing, np.nan, cond.astype(np.float64))
        return np.where(cond & ~missing, keep, np.nan)


def _binop(expr: BinOp, lhs: Value, rhs: Value, steps: I64) -> Value:
    op = expr.op
    if not isinstance(lhs, Matrix) and not isinstance(rhs, Matrix):
        if op in _CMP and not expr.bool_mod:
            raise LogQLError("parse error : comparisons between scalars must use BOOL modifier")
        return _apply(op, lhs, rhs, True, lhs)
    out: dict[str, tuple[dict[str, str], F64]] = {}
    if isinstance(lhs, Matrix) and isinstance(rhs, Matrix):
        if op in ("and", "or", "unless"):
            for key, (labels, values) in lhs.series.items():
                other = rhs.series.get(key)
                other_present = ~np.isnan(other[1]) if other else np.zeros(len(steps), bool)
                if op == "and":
                    values = np.where(other_present, values, np.nan)
                elif op == "unless":
                    values = np.where(other_present, np.nan, values)
                out[key] = (labels, values)
            if op == "or":
                for key, (labels, values) in rhs.series.items():
                    mine = lhs.series.get(key)
                    if mine is None:
                        out[key] = (labels, values)
                    else:
                        merged = np.where(np.isnan(mine[1]), values, mine[1])
                        out[key] = (labels, merged)
        else:
            for key, (labels, values) in lhs.series.items():
                other = rhs.series.get(key)
                if other is None:
                    continue
                out[key] = (labels, _apply(op, values, other[1], expr.bool_mod, values))
    elif isinstance(lhs, Matrix):
        assert not isinstance(rhs, Matrix)
        for key, (labels, values) in lhs.series.items():
            out[key] = (labels, _apply(op, values, rhs, expr.bool_mod, values))
    else:
        assert isinstance(rhs, Matrix) and not isinstance(lhs, Matrix)
        for key, (labels, values) in rhs.series.items():
            out[key] = (labels, _apply(op, lhs, values, expr.bool_mod, values))
    cleaned = {k: v for k, v in out.items() if not np.all(np.isnan(v[1]))}
    return Matrix(steps, cleaned)


def _eval(store: LokiStore, expr: object, steps: I64, stats: QueryStats) -> Value:
    if isinstance(expr, NumberLit):
        return np.full(len(steps), expr.value)
    if isinstance(expr, VectorLit):
        return Matrix(steps, {"{}": ({}, np.full(len(steps), expr.value))})
    if isinstance(expr, RangeAgg):
        return _range_agg(store, expr, steps, stats)
    if isinstance(expr, VectorAgg):
        inner = _eval(store, expr.expr, steps, stats)
        if not isinstance(inner, Matrix):
            raise LogQLError(f"parse error : {expr.op} needs a vector, not a scalar")
        return _vector_agg(expr, inner)
    if isinstance(expr, BinOp):
        lhs = _eval(store, expr.lhs, steps, stats)
        rhs = _eval(store, expr.rhs, steps, stats)
        return _binop(expr, lhs, rhs, steps)
    raise LogQLError("parse error : a log query cannot be evaluated as a metric query")


def run_metric_query(
    store: LokiStore,
    expr: object,
    start_ns: int,
    end_ns: int,
    step_ns: int,
    stats: QueryStats | None = None,
) -> Value:
    """Evaluate a metric expression at every step from ``start_ns`` to ``end_ns`` inclusive."""
    stats = stats if stats is not None else QueryStats()
    if step_ns <= 0:
        steps = np.asarray([start_ns], dtype=np.int64)
    else:
        steps = np.arange(start_ns, end_ns + 1, step_ns, dtype=np.int64)
    return _eval(store, expr, steps, stats)


def format_value(v: float) -> str:
    """A sample value as Go's ``strconv.FormatFloat(v, 'f', -1, 64)`` writes it."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 1e21:
        return str(int(v))
    return str(np.format_float_positional(v, trim="-"))


_ = parse  # re-exported for the module docstring's example
