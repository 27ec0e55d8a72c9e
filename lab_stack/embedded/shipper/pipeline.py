"""Promtail pipeline stages the shipper supports: ``json``, ``labels``, ``timestamp``, ``output``.

Each line starts with an empty *extracted* map; ``json`` fills it from the line (JMESPath-style
dotted paths such as ``a.b[0]``), ``labels`` turns extracted values into stream labels,
``timestamp`` sets the entry's time from one of them and ``output`` replaces the line with one.
Every other Promtail stage is refused when the configuration is read, naming the stage.

Example:
    >>> p = Pipeline([("json", check_stage("json", {"expressions": {"level": ""}}, "s")),
    ...               ("labels", check_stage("labels", {"level": None}, "s"))])
    >>> p.process('{"level": "info"}', 0, {}).labels
    {'level': 'info'}
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lab_stack.errors import ConfigError

__all__ = [
    "SUPPORTED_STAGES",
    "Entry",
    "Pipeline",
    "check_stage",
    "compile_time_format",
    "parse_path",
]

#: The pipeline stages the embedded shipper runs.
SUPPORTED_STAGES = ("json", "labels", "timestamp", "output")

_NAMED_LAYOUTS = {
    "ANSIC": "Mon Jan _2 15:04:05 2006",
    "UnixDate": "Mon Jan _2 15:04:05 MST 2006",
    "RubyDate": "Mon Jan 02 15:04:05 -0700 2006",
    "RFC822": "02 Jan 06 15:04 MST",
    "RFC822Z": "02 Jan 06 15:04 -0700",
    "RFC850": "Monday, 02-Jan-06 15:04:05 MST",
    "RFC1123": "Mon, 02 Jan 2006 15:04:05 MST",
    "RFC1123Z": "Mon, 02 Jan 2006 15:04:05 -0700",
    "RFC3339": "2006-01-02T15:04:05Z07:00",
    "RFC3339Nano": "2006-01-02T15:04:05.999999999Z07:00",
    "Kitchen": "3:04PM",
    "Stamp": "Jan _2 15:04:05",
    "StampMilli": "Jan _2 15:04:05.000",
    "StampMicro": "Jan _2 15:04:05.000000",
    "StampNano": "Jan _2 15:04:05.000000000",
}
_UNIX_SCALES = {"Unix": 1_000_000_000, "UnixMs": 1_000_000, "UnixUs": 1_000, "UnixNs": 1}
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_MONTHS_LONG = [
    "january", "february", "march", "april", "may", "june", "july",
    "august", "september", "october", "november", "december",
]  # fmt: skip
_DAYS = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_DAYS_LONG = "(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"

# Go layout tokens, longest first, with the regex each matches and the field it sets.
_TOKENS: list[tuple[str, str, str]] = [
    ("January", r"[A-Za-z]+", "month_long"),
    ("Monday", _DAYS_LONG, ""),
    ("Z07:00", r"Z|[+-]\d\d:\d\d", "tz"),
    ("-07:00", r"[+-]\d\d:\d\d", "tz"),
    ("Z0700", r"Z|[+-]\d{4}", "tz"),
    ("-0700", r"[+-]\d{4}", "tz"),
    ("2006", r"\d{4}", "year"),
    ("Jan", r"[A-Za-z]{3}", "month_short"),
    ("Mon", _DAYS, ""),
    ("MST", r"[A-Z]{2,5}|[+-]\d\d", "tzname"),
    ("-07", r"[+-]\d\d", "tz"),
    ("01", r"\d\d", "month"),
    ("02", r"\d\d", "day"),
    ("_2", r" ?\d{1,2}", "day"),
    ("06", r"\d\d", "year2"),
    ("15", r"\d\d?", "hour"),
    ("03", r"\d\d", "hour12"),
    ("04", r"\d\d", "minute"),
    ("05", r"\d\d", "second"),
    ("PM", r"AM|PM", "ampm"),
    ("pm", r"am|pm", "ampm"),
    ("1", r"\d\d?", "month"),
    ("2", r"\d\d?", "day"),
    ("3", r"\d\d?", "hour12"),
    ("4", r"\d\d?", "minute"),
    ("5", r"\d\d?", "second"),
]
_FRACTION_RE = re.compile(r"[.,](0+|9+)")


@dataclass(slots=True)
class Entry:
    """One log entry as it goes through the pipeline."""

    line: str
    timestamp_ns: int
    labels: dict[str, str]


def compile_time_format(fmt: str, location: str = "") -> Callable[[str], int]:
    """Compile a Promtail timestamp ``format`` into a parser returning nanoseconds since the epoch.

    Raises:
        ConfigError: the format or location cannot be used.
    """
    if fmt in _UNIX_SCALES:
        scale = _UNIX_SCALES[fmt]

        def parse_unix(value: str) -> int:
            text = value.strip()
            if "." in text and scale != 1:
                whole, _, frac = text.partition(".")
                digits = len(str(scale)) - 1
                return int(whole) * scale + int((frac + "0" * digits)[:digits] or 0)
            return int(text) * scale

        return parse_unix
    layout = _NAMED_LAYOUTS.get(fmt, fmt)
    tz: dt.tzinfo = dt.UTC
    if location:
        try:
            tz = ZoneInfo(location)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"timestamp location {location!r} is not a known time zone. "
                "Hint: use an IANA name such as Europe/Berlin."
            ) from None
    pattern: list[str] = []
    groups: list[str] = []
    i = 0
    has_field = False
    while i < len(layout):
        frac = _FRACTION_RE.match(layout, i)
        if frac and layout[i - 2 : i] == "05":
            n = len(frac.group(1))
            exact = frac.group(1)[0] == "0"
            sep = re.escape(layout[i])
            pattern.append(f"{sep}(\\d{{{n}}})" if exact else f"(?:{sep}(\\d+))?")
            groups.append("fraction")
            i = frac.end()
            continue
        for token, regex, name in _TOKENS:
            if layout.startswith(token, i):
                if name:
                    pattern.append(f"({regex})")
                    groups.append(name)
                    has_field = True
                else:
                    pattern.append(f"(?:{regex})")
                if token in ("05", "5") and not _FRACTION_RE.match(layout, i + len(token)):
                    # Go accepts fractional seconds after the seconds even when the layout has none.
                    pattern.append(r"(?:[.,](\d+))?")
                    groups.append("fraction")
                i += len(token)
                break
        else:
            pattern.append(re.escape(layout[i]))
            i += 1
    if not has_field:
        raise ConfigError(
            f"timestamp format {fmt!r} is neither a known name (RFC3339, RFC3339Nano, Unix, "
            "UnixMs, UnixNs, ...) nor a Go layout. Hint: write a layout of the reference time "
            "2006-01-02T15:04:05Z07:00."
        )
    compiled = re.compile("^" + "".join(pattern) + "$", re.IGNORECASE)

    def parse_layout(value: str) -> int:
        m = compiled.match(value.strip())
        if not m:
            raise ValueError(f"{value!r} does not match layout {layout!r}")
        f: dict[str, str] = {}
        for name, val in zip(groups, m.groups(), strict=True):
            if val is not None:
                f[name] = val
        now = dt.datetime.now(tz)
        year = int(f["year"]) if "year" in f else now.year
        if "year2" in f:
            y2 = int(f["year2"])
            year = 2000 + y2 if y2 < 69 else 1900 + y2
        if "month_short" in f:
            month = _MONTHS.index(f["month_short"].lower()) + 1
        elif "month_long" in f:
            month = _MONTHS_LONG.index(f["month_long"].lower()) + 1
        else:
            month = int(f.get("month", 1))
        hour = int(f.get("hour", 0))
        if "hour12" in f:
            hour = int(f["hour12"]) % 12 + (12 if f.get("ampm", "").lower() == "pm" else 0)
        zone: dt.tzinfo = tz
        if f.get("tz") and f["tz"].upper() != "Z":
            raw = f["tz"].replace(":", "")
            sign = -1 if raw[0] == "-" else 1
            minutes = int(raw[1:3]) * 60 + (int(raw[3:5]) if len(raw) >= 5 else 0)
            zone = dt.timezone(sign * dt.timedelta(minutes=minutes))
        elif f.get("tz", "").upper() == "Z" or f.get("tzname", "").upper() in ("UTC", "GMT", "Z"):
            zone = dt.UTC
        stamp = dt.datetime(
            year,
            month,
            int(f.get("day", 1)),
            hour,
            int(f.get("minute", 0)),
            int(f.get("second", 0)),
            tzinfo=zone,
        )
        frac_digits = f.get("fraction", "")
        nanos = int((frac_digits + "000000000")[:9]) if frac_digits else 0
        return int(stamp.timestamp()) * 1_000_000_000 + nanos

    return parse_layout


_PATH_TOKEN = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|([A-Za-z_][A-Za-z0-9_-]*)|\[(-?\d+)\])')


def parse_path(expr: str, where: str) -> list[str | int]:
    """Parse the JMESPath subset Promtail configs use: ``a.b``, ``"a-b".c``, ``a[0]``."""
    steps: list[str | int] = []
    pos = 0
    text = expr.strip()
    while pos < len(text):
        if steps and text[pos] == ".":
            pos += 1
        m = _PATH_TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ConfigError(
                f"{where}: expression {expr!r} is not supported (the embedded shipper understands "
                'dotted paths such as a.b, "a-b".c and a[0]). Hint: simplify the expression.'
            )
        if m.group(1) is not None:
            steps.append(m.group(1).replace('\\"', '"'))
        elif m.group(2) is not None:
            steps.append(m.group(2))
        else:
            steps.append(int(m.group(3)))
        pos = m.end()
    if not steps:
        raise ConfigError(f"{where}: empty expression. Hint: name a field of the JSON line.")
    return steps


def check_stage(name: str, body: object, where: str) -> dict[str, Any]:
    """Check one stage's settings and return them normalised; refuse unsupported stages."""
    if name not in SUPPORTED_STAGES:
        raise ConfigError(
            f"{where}: pipeline stage {name!r} is not supported by the embedded log shipper "
            f"(supported: {', '.join(SUPPORTED_STAGES)}). Hint: remove it, or run a real Promtail."
        )
    data: dict[str, Any] = dict(body) if isinstance(body, dict) else {}
    if body is not None and not isinstance(body, dict):
        raise ConfigError(f"{where}.{name} must be a mapping, got {type(body).__name__}.")

    def only(known: set[str]) -> None:
        extra = sorted(set(data) - known)
        if extra:
            raise ConfigError(
                f"{where}.{name}: unsupported option(s) {', '.join(extra)}. "
                f"Hint: the embedded shipper reads {', '.join(sorted(known))}."
            )

    if name == "json":
        only({"expressions", "source", "drop_malformed"})
        exprs = data.get("expressions")
        if not isinstance(exprs, dict) or not exprs:
            raise ConfigError(f"{where}.json.expressions must be a non-empty mapping.")
        compiled = {
            str(k): parse_path(str(v) if v else str(k), f"{where}.json.expressions.{k}")
            for k, v in exprs.items()
        }
        return {
            "expressions": compiled,
            "source": data.get("source") or "",
            "drop_malformed": bool(data.get("drop_malformed", False)),
        }
    if name == "labels":
        if not data:
            raise ConfigError(f"{where}.labels must name at least one label.")
        for label in data:
            if not re.match(r"^[a-zA-Z_][a-zA-Z0-9_]*$", str(label)):
                raise ConfigError(f"{where}.labels: {label!r} is not a valid label name.")
        return {str(k): str(v) if v else str(k) for k, v in data.items()}
    if name == "timestamp":
        only({"source", "format", "fallback_formats", "location", "action_on_failure"})
        if not data.get("source") or not data.get("format"):
            raise ConfigError(f"{where}.timestamp needs both source and format.")
        location = str(data.get("location") or "")
        formats = [str(data["format"]), *[str(x) for x in data.get("fallback_formats") or []]]
        action = str(data.get("action_on_failure") or "fudge")
        if action not in ("fudge", "skip"):
            raise ConfigError(f"{where}.timestamp.action_on_failure must be fudge or skip.")
        return {
            "source": str(data["source"]),
            "parsers": [compile_time_format(f, location) for f in formats],
            "action_on_failure": action,
        }
    only({"source"})
    if not data.get("source"):
        raise ConfigError(f"{where}.output needs a source (an extracted field).")
    return {"source": str(data["source"])}


def _lookup(value: Any, steps: Sequence[str | int]) -> Any:
    for step in steps:
        if isinstance(step, int):
            if not isinstance(value, list) or not -len(value) <= step < len(value):
                return None
            value = value[step]
        else:
            if not isinstance(value, dict):
                return None
            value = value.get(step)
    return value


def _as_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, separators=(",", ":"))


class Pipeline:
    """The stages of one scrape config, run on every line in order."""

    def __init__(self, stages: Sequence[tuple[str, dict[str, Any]]]) -> None:
        self._stages = list(stages)
        self._last_ts = 0

    def process(self, line: str, timestamp_ns: int, labels: dict[str, str]) -> Entry | None:
        """Run the stages on one line; ``None`` means the line is dropped."""
        entry = Entry(line=line, timestamp_ns=timestamp_ns, labels=dict(labels))
        extracted: dict[str, Any] = {}
        for name, cfg in self._stages:
            if name == "json":
                source = entry.line if not cfg["source"] else extracted.get(cfg["source"])
                try:
                    doc = json.loads(source) if isinstance(source, str) else None
                except ValueError:
                    doc = None
                if not isinstance(doc, dict):
                    if cfg["drop_malformed"]:
                        return None
                    continue
                for key, steps in cfg["expressions"].items():
                    found = _lookup(doc, steps)
                    if found is not None:
                        extracted[key] = found
            elif name == "labels":
                for label, key in cfg.items():
                    if key in extracted:
                        value = _as_string(extracted[key])
                        if value:
                            entry.labels[label] = value
            elif name == "timestamp":
                raw = extracted.get(cfg["source"])
                parsed: int | None = None
                if raw is not None:
                    for parser in cfg["parsers"]:
                        try:
                            parsed = parser(_as_string(raw))
                            break
                        except (ValueError, OverflowError):
                            continue
                if parsed is not None:
                    entry.timestamp_ns = parsed
                    self._last_ts = parsed
                elif cfg["action_on_failure"] == "fudge" and self._last_ts:
                    # Promtail's "fudge": the last good timestamp plus 1 ns keeps the order.
                    self._last_ts += 1
                    entry.timestamp_ns = self._last_ts
            elif name == "output" and cfg["source"] in extracted:
                entry.line = _as_string(extracted[cfg["source"]])
        return entry
