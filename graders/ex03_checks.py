"""Exercise 03's check logic as plain functions: line validation, PII probes and search, LogQL scoping.

The grader module :mod:`graders.test_ex03_logging` drives traffic and asks Loki; everything here is
pure (no backend), so it is unit-tested on its own in ``tests/graders/test_ex03_checks.py``.

Example:
    >>> scope_logql('sum(count_over_time({service="gw"} | json [1m]))', 'filename=~"/w/.+"')
    'sum(count_over_time({filename=~"/w/.+", service="gw"} | json [1m]))'
    >>> line_problems({"event": "x"})[:2]
    ['no timestamp', 'no level']
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "ALLOWED_LABELS",
    "FEATURES",
    "FORBIDDEN_LABELS",
    "GATEWAY",
    "LEVELS",
    "REQUIRED_FIELDS",
    "PiiProbe",
    "config_labels",
    "find_pii",
    "is_iso_utc",
    "line_problems",
    "logql_regex",
    "make_probes",
    "parse_line",
    "scope_logql",
    "unsalted_digests",
]

GATEWAY = "prediction-gateway"
FEATURES = "feature-service"
#: Fields every shipped line must carry.
REQUIRED_FIELDS = ("timestamp", "level", "event", "logger", "service", "request_id")
LEVELS = frozenset({"debug", "info", "warning", "error", "critical"})
#: Labels with a small, fixed set of values (``filename`` is the shipper's own: one per file).
ALLOWED_LABELS = frozenset(
    {
        "job",
        "service",
        "level",
        "env",
        "environment",
        "app",
        "host",
        "hostname",
        "namespace",
        "cluster",
        "component",
        "team",
        "filename",
        "service_name",
    }
)
#: Labels that take one value per request or user: never labels, always fields.
FORBIDDEN_LABELS = frozenset(
    {
        "request_id",
        "trace_id",
        "span_id",
        "user",
        "user_id",
        "path",
        "latency_ms",
        "event",
        "status_code",
        "http_status",
        "error",
        "request",
        "timestamp",
        "model_version",
    }
)
_ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|\+00:00|\+0000)$")
_TRAFFIC_USER = re.compile(r"(?<![\w-])user-\d{5}(?![\w])")


def logql_regex(value: str) -> str:
    """``value`` escaped as a regular expression inside a LogQL double-quoted string."""
    return re.escape(value).replace("\\", "\\\\").replace('"', '\\"')


def scope_logql(expr: str, matcher: str) -> str:
    """Add ``matcher`` (``name=~"re"``) to every stream selector of ``expr``; strings are skipped."""
    out: list[str] = []
    quote = ""
    i = 0
    while i < len(expr):
        ch = expr[i]
        if quote:
            out.append(ch)
            if ch == "\\" and quote == '"' and i + 1 < len(expr):
                out.append(expr[i + 1])
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in '"`':
            quote = ch
            out.append(ch)
        elif ch == "{":
            rest = expr[i + 1 :].lstrip()
            out.append("{" + matcher + ("" if rest.startswith("}") else ", "))
            i += 1
            while i < len(expr) and expr[i] == " ":
                i += 1
            continue
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def parse_line(line: str) -> dict[str, Any] | None:
    """The JSON object a log line holds, or ``None`` when it is not one JSON object."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def is_iso_utc(value: object) -> bool:
    """True for an ISO-8601 timestamp in UTC (``...Z`` or ``+00:00``) that parses."""
    if not isinstance(value, str) or not _ISO_UTC.match(value):
        return False
    text = value.replace("Z", "+00:00")
    if "." in text:  # Python parses at most 6 fraction digits
        head, _, tail = text.partition(".")
        digits = re.match(r"\d+", tail)
        frac = digits.group(0) if digits else ""
        text = f"{head}.{frac[:6].ljust(6, '0')}{tail[len(frac) :]}"
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def line_problems(
    obj: Mapping[str, Any] | None, *, services: Iterable[str] = (GATEWAY, FEATURES)
) -> list[str]:
    """What is wrong with one parsed line (empty: nothing)."""
    if obj is None:
        return ["not a JSON object"]
    problems = []
    for name in REQUIRED_FIELDS:
        value = obj.get(name)
        if value is None or value == "":
            problems.append(f"no {name}")
    if obj.get("timestamp") and not is_iso_utc(obj["timestamp"]):
        problems.append(f"timestamp {obj['timestamp']!r} is not ISO-8601 UTC")
    if obj.get("level") and str(obj["level"]).lower() not in LEVELS:
        problems.append(f"level {obj['level']!r} is not one of {sorted(LEVELS)}")
    allowed = set(services)
    if obj.get("service") and obj["service"] not in allowed:
        problems.append(f"service {obj['service']!r} is not one of {sorted(allowed)}")
    return problems


# --- PII probes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PiiProbe:
    """One request full of personal data, and the strings that must never reach Loki."""

    request_id: str
    user_id: str
    body: dict[str, Any]
    secrets: dict[str, str] = field(default_factory=dict)


def _luhn_complete(digits: str) -> str:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d)
        if i % 2 == 0:
            n *= 2
            n = n - 9 if n > 9 else n
        total += n
    return digits + str((10 - total % 10) % 10)


def make_probes(token: str, transactions: Sequence[Mapping[str, Any]]) -> list[PiiProbe]:
    """One probe per transaction, PII made from ``token`` (hex) so each grading's values are new."""
    rng = random.Random(token)
    probes = []
    for i, tx in enumerate(transactions):
        user = f"probe-{token}-{i}"
        card = _luhn_complete(
            rng.choice(["4", "51", "37"]) + "".join(rng.choice("0123456789") for _ in range(13))
        )
        card_text = [
            " ".join(card[j : j + 4] for j in range(0, len(card), 4)),
            "-".join(card[j : j + 4] for j in range(0, len(card), 4)),
            card,
        ][i % 3]
        ssn = f"{rng.randint(100, 665):03d}-{rng.randint(10, 99):02d}-{rng.randint(1000, 9999):04d}"
        area, mid, end = rng.randint(201, 989), rng.randint(200, 999), rng.randint(1000, 9999)
        phone = [
            f"+1 {area}-{mid}-{end}",
            f"({area}) {mid}-{end}",
            f"{area}.{mid}.{end}",
            f"+44 20 {mid}{end % 10} {end}",
        ][i % 4]
        other_phone = f"({area}) {end % 900 + 100}-{mid}{end % 10}"
        email = f"{['ana', 'li', 'jo'][i % 3]}.{token}{i}@example.org"
        other_email = f"billing+{token}{i}@mail.example.com"
        body = {
            "user_id": user,
            **{k: v for k, v in tx.items() if k != "user_id"},
            "email": email,
            "card_number": card_text,
            "phone": phone,
            "note": f"customer asks for a call on {other_phone}, receipt to {other_email}, SSN {ssn}",
        }
        found = {
            "email": email,
            "email (in a note)": other_email,
            "card number": card_text,
            "card number digits": card,
            "SSN": ssn,
            "phone": phone,
            "phone (in a note)": other_phone,
            "raw user id": user,
        }
        probes.append(PiiProbe(f"pii-{token}-{i:02d}", user, body, found))
    return probes


def unsalted_digests(user_id: str, *, prefix: int = 12) -> dict[str, str]:
    """``{name: hex prefix}`` of unsalted hashes of ``user_id`` (reversible by enumerating ids)."""
    out = {}
    for algo in ("sha256", "sha1", "md5"):
        out[f"unsalted {algo}"] = hashlib.new(algo, user_id.encode()).hexdigest()[:prefix]
    return out


def find_pii(lines: Iterable[str], probes: Sequence[PiiProbe]) -> list[tuple[str, str]]:
    """``(what, excerpt)`` for every probe secret, raw user id or unsalted hash found in ``lines``."""
    needles: list[tuple[str, str]] = []
    for probe in probes:
        for what, value in probe.secrets.items():
            needles.append((what, value.lower()))
            digits = re.sub(r"\D", "", value)
            if what.startswith("phone") and len(digits) >= 10 and digits != value:
                needles.append((f"{what} (digits only)", digits))
        needles += [(what, value) for what, value in unsalted_digests(probe.user_id).items()]
    hits: list[tuple[str, str]] = []
    seen: set[str] = set()
    for line in lines:
        low = line.lower()
        for what, needle in needles:
            at = low.find(needle)
            if at >= 0 and what not in seen:
                seen.add(what)
                hits.append((what, _excerpt(line, at, len(needle))))
        match = _TRAFFIC_USER.search(line)
        if match and "raw user id (traffic)" not in seen:
            seen.add("raw user id (traffic)")
            hits.append(
                ("raw user id (traffic)", _excerpt(line, match.start(), len(match.group())))
            )
    return hits


def _excerpt(line: str, at: int, length: int) -> str:
    start = max(at - 40, 0)
    return ("…" if start else "") + line[start : at + length + 20] + "…"


# --- the shipper's config -----------------------------------------------------------------------


def config_labels(doc: Mapping[str, Any]) -> tuple[set[str], bool, list[str]]:
    """(label names the config can create, whether a json stage exists, the ``__path__`` globs)."""
    names: set[str] = set()
    has_json = False
    paths: list[str] = []
    for scrape in doc.get("scrape_configs") or []:
        if not isinstance(scrape, Mapping):
            continue
        for static in scrape.get("static_configs") or []:
            labels = (static or {}).get("labels") or {}
            if "__path__" in labels:
                paths.append(str(labels["__path__"]))
            names |= {str(k) for k in labels if not str(k).startswith("__")}
        for stage in scrape.get("pipeline_stages") or []:
            if not isinstance(stage, Mapping):
                continue
            for kind, body in stage.items():
                if kind == "json":
                    has_json = True
                elif kind == "labels" and isinstance(body, Mapping):
                    names |= {str(k) for k in body}
    for client in doc.get("clients") or []:
        if isinstance(client, Mapping):
            names |= {str(k) for k in (client.get("external_labels") or {})}
    return names, has_json, paths
