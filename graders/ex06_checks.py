"""Exercise 06 — the check logic as plain functions: rule files, promtool cases, routing, live fire.

The grader module ``graders/test_ex06_alerting.py`` wires these into checks. Everything here asks
a real tool or backend: promtool and amtool for the files, Alertmanager for inhibition, and, for
the live part, Prometheus's alerts and the notification sinks while the grader's own gateways run
the traffic scenarios.

* Hidden rule cases (``graders/ex06_hidden_rule_tests/*.yml``) are promtool test files over a
  ``canonical.yml`` that :func:`canonical_rules` writes: each alert's ``expr`` wrapped in
  ``count(...)`` with its ``for:`` kept, labels and annotations dropped — so the student's labels,
  wording and aggregation do not matter, only *when* the alert fires. :func:`judge_case` runs the
  reference rule on the case first (a failure there is a grader bug), then the student's. The
  reference rules are the solution notebook's ``%%writefile alert_rules.yml`` cell
  (:func:`reference_rules`); the reference's verdicts are cached per process, and the cases run
  a few promtool processes at a time (:func:`judge_cases`).
* Live firing (:func:`run_live`) uses :func:`compress_rules`: every duration (``for:``, range
  windows, subqueries, offsets) divided by :data:`LIVE_FACTOR` (120), so two minutes of the real
  rule are a second in the lab; all scenarios run at once for about 15 s and the run ends as soon
  as every live check has its evidence. Each run labels its targets with its own id, so alerts an
  earlier run left in Alertmanager never count.
* ``alertmanager.yml`` names the sinks with two placeholders, ``${SINKS_URL}`` and
  ``${SMTP_SMARTHOST}``, filled by :func:`render_alertmanager_config` (ports differ per stack).

Example:
    >>> compress_duration("5m"), compress_duration("6h"), compress_duration("90s")
    ('5s', '360s', '2s')
    >>> compress_expr("rate(x[5m]) > 0 and y offset 1h")
    'rate(x[5s]) > 0 and y offset 60s'
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from graders.errors import GradingError
from lab_stack import Stack, promtool
from lab_stack.promtool import ToolResult
from lab_stack.settings import PROJECT_ROOT

__all__ = [
    "HIDDEN_DIR",
    "LIVE_FACTOR",
    "LIVE_GPU_JOB",
    "LIVE_ROLES",
    "PLACEHOLDERS",
    "REQUIRED_ALERTS",
    "SEVERITY_RECEIVERS",
    "SOLUTION_NOTEBOOK",
    "HiddenCase",
    "LiveRun",
    "alert_rules",
    "canonical_rules",
    "clear_solution_regions",
    "compress_duration",
    "compress_expr",
    "compress_rules",
    "hidden_cases",
    "inhibition_probe",
    "judge_case",
    "judge_cases",
    "make_starter_files",
    "note_status",
    "note_text",
    "parse_duration",
    "poll_alerts",
    "reference_rules",
    "render_alertmanager_config",
    "routes_for",
    "routes_for_many",
    "rule_tests_coverage",
    "run_live",
    "runbook_problems",
    "sink_addresses",
    "starter_dashboard",
    "written_file",
]

#: Where the hidden promtool cases live.
HIDDEN_DIR = Path(__file__).resolve().parent / "ex06_hidden_rule_tests"
#: The solution notebook: its ``%%writefile alert_rules.yml`` cell holds the reference rules the
#: hidden cases are checked against first.
SOLUTION_NOTEBOOK = PROJECT_ROOT / "solutions" / "ex06_alerting" / "ex06_alerting.ipynb"
#: Every alert the exercise asks for, with the severity it must carry.
REQUIRED_ALERTS: dict[str, str] = {
    "HighPredictionLatency": "warning",
    "HighErrorRate": "critical",
    "ErrorBudgetBurnFast": "critical",
    "ErrorBudgetBurnSlow": "warning",
    "TargetDown": "warning",
    "NodeHighCPU": "warning",
    "NodeMemoryHigh": "warning",
    "NodeDiskAlmostFull": "warning",
    "KubePodCrashLooping": "warning",
    "KubeContainerNearMemoryLimit": "warning",
    "GPUMemoryHigh": "warning",
    "GPUMemoryWillExhaust": "warning",
}
#: Alerts the student's own rule_tests.yml must test, firing and not firing.
TESTED_ALERTS = (
    "HighPredictionLatency",
    "HighErrorRate",
    "ErrorBudgetBurnFast",
    "ErrorBudgetBurnSlow",
    "GPUMemoryHigh",
    "GPUMemoryWillExhaust",
)
#: Which receivers each severity must reach (``""``: an alert without severity).
SEVERITY_RECEIVERS: dict[str, tuple[str, ...]] = {
    "critical": ("pager", "slack-ml"),
    "warning": ("slack-ml", "team-email"),
    "": ("team-email",),
}
#: Receiver name -> (Alertmanager config key, sink path prefix or None for email).
RECEIVER_KINDS: dict[str, str] = {
    "pager": "webhook_configs",
    "slack-ml": "slack_configs",
    "team-email": "email_configs",
}
#: The placeholders ``alertmanager.yml`` uses for the lab's notification sinks.
PLACEHOLDERS = ("${SINKS_URL}", "${SMTP_SMARTHOST}")

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|y|w|d|h|m|s)")
_DURATION_FULL = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|y|w|d|h|m|s))+$")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_SOLUTION = re.compile(
    r"^(?P<indent>[ \t]*)(?:###|<!--) BEGIN SOLUTION.*?^[ \t]*(?:###|<!--) END SOLUTION[^\n]*\n?",
    re.M | re.S,
)


# --- files ---------------------------------------------------------------------------------------
def clear_solution_regions(text: str, *, markdown: bool = False) -> str:
    """The starter form of a solution file: each ``### BEGIN/END SOLUTION`` region emptied.

    YAML regions become ``# YOUR CODE HERE``; markdown regions (``<!-- BEGIN SOLUTION -->``)
    become ``<!-- YOUR RUNBOOK HERE -->``.
    """

    def stub(match: re.Match[str]) -> str:
        indent = match.group("indent")
        return (
            f"{indent}<!-- YOUR RUNBOOK HERE -->\n" if markdown else f"{indent}# YOUR CODE HERE\n"
        )

    return _SOLUTION.sub(stub, text)


def written_file(notebook: Path, name: str) -> str:
    """The text a notebook's ``%%writefile <name>`` cell writes (the first such cell).

    Raises:
        GradingError: no code cell of ``notebook`` writes ``name``.
    """
    import nbformat

    nb = nbformat.read(notebook, as_version=4)  # type: ignore[no-untyped-call]
    for cell in nb.cells:
        first, _, rest = str(cell.source).partition("\n")
        if cell.cell_type == "code" and first.split()[:2] == ["%%writefile", name]:
            return rest if rest.endswith("\n") else rest + "\n"
    raise GradingError(
        f"no cell of {notebook.name} starts with '%%writefile {name}'. Hint: this is a grader "
        "bug if it is the solution notebook; report it to the course staff."
    )


def reference_rules() -> dict[str, dict[str, Any]]:
    """The solution's alerting rules by name (read from the solution notebook's cell)."""
    return _reference_rules(SOLUTION_NOTEBOOK.stat().st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _reference_rules(mtime_ns: int) -> dict[str, dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="ex06-ref-") as tmp:
        path = Path(tmp) / "alert_rules.yml"
        path.write_text(written_file(SOLUTION_NOTEBOOK, "alert_rules.yml"))
        return alert_rules(path)


def alert_rules(path: Path) -> dict[str, dict[str, Any]]:
    """The alerting rules of a rules file by alert name (the first of a duplicated name wins).

    Raises:
        GradingError: the file is missing or is not a rules file (the message says why).
    """
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise GradingError(
            f"cannot read {path.name}: {exc}. Hint: keep the file in the exercise folder, "
            "valid YAML (promtool check rules tells you where)."
        ) from None
    found: dict[str, dict[str, Any]] = {}
    groups = document.get("groups") if isinstance(document, dict) else None
    for group in groups or []:
        for rule in (group or {}).get("rules") or []:
            if isinstance(rule, dict) and isinstance(rule.get("alert"), str):
                found.setdefault(rule["alert"], rule)
    return found


def runbook_problems(rules: Mapping[str, Mapping[str, Any]], folder: Path) -> list[str]:
    """Alerts whose ``runbook_url`` does not end in ``runbooks/<file>.md`` of ``folder``, or
    whose runbook is too thin (fewer than three ``##`` sections or 60 words)."""
    problems = []
    for name, rule in rules.items():
        url = str((rule.get("annotations") or {}).get("runbook_url", ""))
        match = re.search(r"runbooks/([A-Za-z0-9_.-]+\.md)(?:#.*)?$", url)
        if not match:
            problems.append(f"{name}: runbook_url {url!r} does not point at runbooks/<name>.md")
            continue
        page = folder / "runbooks" / match.group(1)
        if not page.is_file():
            problems.append(f"{name}: {url} names runbooks/{match.group(1)}, which does not exist")
            continue
        text = page.read_text(errors="replace")
        sections = len(re.findall(r"^##\s+\S", text, re.M))
        words = len(re.findall(r"[A-Za-z]{2,}", text))
        if sections < 3 or words < 60:
            problems.append(
                f"{name}: runbooks/{match.group(1)} has {sections} '##' sections and {words} words "
                "(want what it means, how to triage, how to mitigate: ≥ 3 sections, ≥ 60 words)"
            )
    return problems


def rule_tests_coverage(path: Path, alerts: Sequence[str] = TESTED_ALERTS) -> list[str]:
    """Alerts of ``alerts`` that ``rule_tests.yml`` does not test both firing and not firing."""
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        return [f"cannot read {path.name}: {exc}"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in document.get("tests") or [] if isinstance(document, dict) else []:
        for case in (test or {}).get("alert_rule_test") or []:
            name = str((case or {}).get("alertname", ""))
            (firing if (case or {}).get("exp_alerts") else quiet).add(name)
    return [
        f"{a}: {'no firing case' if a not in firing else ''}"
        f"{' and ' if a not in firing and a not in quiet else ''}"
        f"{'no not-firing case' if a not in quiet else ''}"
        for a in alerts
        if a not in firing or a not in quiet
    ]


# --- durations and the time-compressed copy -----------------------------------------------------
def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration (``1h30m``, ``90s``, ``500ms``).

    Raises:
        ValueError: not a duration.
    """
    text = str(text).strip()
    if not _DURATION_FULL.match(text):
        raise ValueError(f"{text!r} is not a Prometheus duration")
    return sum(float(n) * _UNIT_S[u] for n, u in _DURATION.findall(text))


def compress_duration(text: str, *, factor: float = 60.0, floor_s: float = 1.0) -> str:
    """``text`` divided by ``factor`` (whole seconds, at least ``floor_s``): ``5m`` -> ``5s``."""
    seconds = max(math.ceil(parse_duration(text) / factor), floor_s)
    return f"{seconds:g}s"


def compress_expr(expr: str, *, factor: float = 60.0) -> str:
    """``expr`` with range windows, subquery ranges/steps and offsets divided by ``factor``.

    Range windows keep at least 2 s so that ``rate`` over 1 s scrapes still has two samples.
    """

    def window(match: re.Match[str]) -> str:
        inner = match.group(1)
        parts = inner.split(":")
        try:
            if len(parts) == 1:
                return f"[{compress_duration(parts[0], factor=factor, floor_s=2.0)}]"
            step = compress_duration(parts[1], factor=factor) if parts[1].strip() else ""
            return f"[{compress_duration(parts[0], factor=factor, floor_s=2.0)}:{step}]"
        except ValueError:
            return match.group(0)

    def offset(match: re.Match[str]) -> str:
        try:
            return f"offset {compress_duration(match.group(1), factor=factor)}"
        except ValueError:
            return match.group(0)

    out = re.sub(r"\[([0-9a-z.:\s]+)\]", window, expr)
    return re.sub(r"offset\s+(\d[0-9a-z.]*)", offset, out)


def compress_rules(text: str, *, factor: float = 60.0) -> str:
    """A rules file with every alert's ``for:`` and the durations in its ``expr`` divided by ``factor``."""
    document = yaml.safe_load(text)
    for group in document.get("groups") or []:
        for rule in group.get("rules") or []:
            if "expr" in rule:
                rule["expr"] = compress_expr(str(rule["expr"]), factor=factor)
            if rule.get("for"):
                rule["for"] = compress_duration(str(rule["for"]), factor=factor)
        if group.get("interval"):
            group["interval"] = "1s"
    return yaml.safe_dump(document, sort_keys=False, width=200)


# --- hidden promtool cases ----------------------------------------------------------------------
@dataclass(frozen=True)
class HiddenCase:
    """One hidden promtool case: its file, what it shows, and the alerts it judges."""

    path: Path
    description: str
    alerts: tuple[str, ...]

    @property
    def name(self) -> str:
        """The case's file stem, e.g. ``latency_one_minute_burst``."""
        return self.path.stem


def hidden_cases(prefix: str = "") -> list[HiddenCase]:
    """The hidden cases whose file name starts with ``prefix``."""
    cases = []
    for path in sorted(HIDDEN_DIR.glob(f"{prefix}*.yml")):
        header = {}
        for line in path.read_text().splitlines():
            if not line.startswith("#"):
                break
            key, _, value = line.lstrip("# ").partition(":")
            header[key.strip()] = value.strip()
        alerts = tuple(
            a.strip() for a in header.get("Alerts judged here", "").rstrip(".").split(",")
        )
        cases.append(HiddenCase(path, header.get("Hidden check", path.stem), alerts))
    return cases


def canonical_rules(rules: Mapping[str, Mapping[str, Any]], names: Sequence[str]) -> str:
    """A rules file with ``names`` only, each as ``count(<expr>)`` with its ``for:``.

    Raises:
        KeyError: an alert of ``names`` is not in ``rules``.
    """
    canonical = []
    for name in names:
        rule = rules[name]
        item: dict[str, Any] = {
            "alert": name,
            "expr": f"count(\n{str(rule.get('expr', '')).strip()}\n)",
        }
        if rule.get("for"):
            item["for"] = str(rule["for"])
        canonical.append(item)
    return yaml.safe_dump({"groups": [{"name": "canonical", "rules": canonical}]}, sort_keys=False)


def _run_case(case: HiddenCase, rules: Mapping[str, Mapping[str, Any]]) -> ToolResult:
    return _run_canonical(case.path, canonical_rules(rules, case.alerts))


@functools.lru_cache(maxsize=64)
def _run_canonical(case_path: Path, canonical: str) -> ToolResult:
    # Cached on the case file and the canonical rules' text: the reference's verdict on a case is
    # computed once per process, and so is a student's rule that did not change.
    with tempfile.TemporaryDirectory(prefix="ex06-case-") as tmp:
        folder = Path(tmp)
        (folder / "canonical.yml").write_text(canonical)
        shutil.copyfile(case_path, folder / "case.yml")
        return promtool.test_rules([folder / "case.yml"])


def judge_case(
    case: HiddenCase,
    student: Mapping[str, Mapping[str, Any]],
    reference: Mapping[str, Mapping[str, Any]] | None = None,
) -> str | None:
    """``None`` when the student's rules behave like the reference on ``case``, else why not.

    Raises:
        GradingError: the reference rules fail the case (a grader bug, not the student's).
    """
    reference = reference_rules() if reference is None else reference
    ref = _run_case(case, reference)
    if not ref.ok:
        raise GradingError(
            f"the reference rules fail hidden case {case.name}:\n{ref.output[-1500:]}\n"
            "Hint: this is a grader bug; report it to the course staff."
        )
    missing = [a for a in case.alerts if a not in student]
    if missing:
        return f"{case.name}: no alert named {', '.join(missing)}"
    got = _run_case(case, student)
    if got.ok:
        return None
    wrong = []
    for block in re.split(r"\n\s*(?=alertname:)", got.output):
        m = re.match(r"alertname:\s*(\S+?),\s*time:\s*(\S+?),", block.strip())
        if m:
            exp_firing = not re.search(r"exp:\s*\[\s*\]", block)
            wrong.append(
                f"{m.group(1)} at {m.group(2)} should {'' if exp_firing else 'not '}be firing"
            )
    detail = "; ".join(wrong) or got.output.strip().splitlines()[-1][:300]
    return f"{case.name} ({case.description}): {detail}"


def judge_cases(
    cases: Sequence[HiddenCase],
    student: Mapping[str, Mapping[str, Any]],
    reference: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[str]:
    """:func:`judge_case` over ``cases``, a few promtool runs at a time; the problems, in order.

    Raises:
        GradingError: the reference rules fail a case (a grader bug, not the student's).
    """
    with ThreadPoolExecutor(max_workers=4) as pool:
        verdicts = list(pool.map(lambda c: judge_case(c, student, reference), cases))
    return [v for v in verdicts if v is not None]


# --- Alertmanager configuration ---------------------------------------------------------------
def sink_addresses(stack: Stack) -> dict[str, str]:
    """Values of the placeholders as the running Alertmanager reaches the sinks.

    Native stacks: the host URLs. Container stacks: the sinks' address on the stack's network.
    """
    values = stack.placeholders(seen_from="alertmanager")
    return {f"${{{key}}}": values[key] for key in ("SINKS_URL", "SMTP_SMARTHOST")}


def render_alertmanager_config(
    text: str, addresses: Mapping[str, str], *, fast: bool = False
) -> str:
    """``alertmanager.yml`` with the placeholders filled; ``fast`` shortens grouping to seconds.

    ``fast`` sets ``group_wait: 1s`` and ``group_interval: 1s`` on every route that sets them
    (and the root), for live checks that cannot wait 30 s and 5 minutes.
    """
    for placeholder, value in addresses.items():
        text = text.replace(placeholder, value)
    if not fast:
        return text
    document = yaml.safe_load(text)
    if not isinstance(document, dict) or not isinstance(document.get("route"), dict):
        return text

    def shorten(route: dict[str, Any], root: bool) -> None:
        for key in ("group_wait", "group_interval"):
            if root or key in route:
                route[key] = "1s"
        for child in route.get("routes") or []:
            if isinstance(child, dict):
                shorten(child, False)

    shorten(document["route"], True)
    return yaml.safe_dump(document, sort_keys=False, width=200)


def routes_for(config: Path, labels: Mapping[str, str]) -> tuple[str, ...]:
    """The receivers ``amtool config routes test`` sends an alert with ``labels`` to."""
    result = promtool.routes_test(config, dict(labels))
    lines = [ln.strip() for ln in result.stdout.splitlines() if ln.strip()]
    if result.returncode != 0 or not lines:
        raise GradingError(
            f"amtool config routes test {dict(labels)} failed: {result.output[-500:]}. "
            "Hint: run amtool check-config on the rendered file."
        )
    return tuple(sorted(r.strip() for r in lines[-1].split(",") if r.strip()))


def routes_for_many(config: Path, label_sets: Sequence[Mapping[str, str]]) -> list[tuple[str, ...]]:
    """:func:`routes_for` for each of ``label_sets``, a few amtool runs at a time, in order."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda labels: routes_for(config, labels), label_sets))


def inhibition_probe(stack: Stack, config: Path, *, service: str = "ex06-probe") -> dict[str, bool]:
    """Post synthetic alerts to Alertmanager running ``config``; report which were inhibited.

    Alerts: a critical ``HighErrorRate`` of ``service``; warnings ``ErrorBudgetBurnSlow`` of the
    same service, ``HighPredictionLatency`` of another service and ``GPUMemoryHigh`` of a GPU.
    Returns ``{alertname: inhibited}`` for the three warnings. The alerts are resolved afterwards
    and the lab's Alertmanager configuration restored.
    """
    other = f"{service}-other"
    now = datetime.now(UTC)
    alerts = [
        {"alertname": "HighErrorRate", "severity": "critical", "service": service},
        {"alertname": "ErrorBudgetBurnSlow", "severity": "warning", "service": service},
        {"alertname": "HighPredictionLatency", "severity": "warning", "service": other},
        {"alertname": "GPUMemoryHigh", "severity": "warning", "gpu": "0", "Hostname": "probe"},
    ]
    body = [
        {
            "labels": {**labels, "probe": "ex06"},
            "startsAt": now,
            "endsAt": now + timedelta(minutes=2),
        }
        for labels in alerts
    ]
    am = stack.alertmanager
    stack.apply_alertmanager_config(config)
    try:
        am.post_alerts(body)
        verdict: dict[str, bool] = {}
        deadline = time.monotonic() + 6.0
        while time.monotonic() < deadline:
            held = am.alerts(filter=['probe="ex06"'])
            states = {a["labels"]["alertname"]: a.get("status", {}) for a in held}
            if len(states) == len(alerts) and all(
                s.get("state") != "unprocessed" for s in states.values()
            ):
                verdict = {
                    name: bool(states[name].get("inhibitedBy"))
                    for name in ("ErrorBudgetBurnSlow", "HighPredictionLatency", "GPUMemoryHigh")
                }
                if verdict["ErrorBudgetBurnSlow"] or time.monotonic() > deadline - 3.0:
                    break
            time.sleep(0.25)
        return verdict
    finally:
        with contextlib.suppress(Exception):
            ended = datetime.now(UTC)
            am.post_alerts([{**a, "endsAt": ended} for a in body])
        stack.reset_config("alertmanager")


# --- the live run ------------------------------------------------------------------------------
#: The live run divides every duration of the student's rules by this: ``for: 15m`` -> ``8s``,
#: ``for: 5m`` -> ``3s``, ``[2m]`` -> ``[2s]`` (range windows keep two 1 s scrapes at least).
LIVE_FACTOR = 120.0
#: The grader's gateways, by scenario; each run labels them ``service="ex06-<role>-<run id>"``, so
#: that alerts left in Alertmanager by an earlier run never count for this one.
LIVE_ROLES = ("steady", "latency", "errors")
#: Scrape job of the grader's simulated GPU source (``service="ex06-gpu-<run id>"``): the job
#: dcgm-exporter has, so rules that select ``job="dcgm"`` see it.
LIVE_GPU_JOB = "dcgm"


def note_text(note: Any) -> str:
    """A notification's payload as one JSON string (to look for a service or a link in it)."""
    return json.dumps(dict(note.payload), default=str)


def note_status(note: Any) -> str:
    """``firing`` or ``resolved``: the sink's reading, else a word of the payload; else ``""``."""
    if note.status:
        return str(note.status)
    text = note_text(note).lower()
    return "resolved" if "resolved" in text else "firing" if "firing" in text else ""


@dataclass
class LiveRun:
    """What the live run saw: when each alert first fired and what reached the sinks."""

    started: float
    services: dict[str, str] = field(default_factory=dict)
    ended: float = 0.0
    first_firing: dict[tuple[str, str], float] = field(default_factory=dict)
    first_pending: dict[tuple[str, str], float] = field(default_factory=dict)
    resolved_at: dict[tuple[str, str], float] = field(default_factory=dict)
    am_states: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    #: the labels and annotations of each alert as Prometheus first reported it firing
    details: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    notifications: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    traffic_done: bool = False

    def firing(self, alertname: str, key: str = "") -> float | None:
        """When ``alertname`` (for ``service``/``gpu`` value ``key``) first fired, or None."""
        if key:
            return self.first_firing.get((alertname, key))
        times = [t for (a, _), t in self.first_firing.items() if a == alertname]
        return min(times) if times else None

    def fired_for(self, key: str) -> list[str]:
        """Alert names that fired with ``service`` (or ``gpu``) ``key``."""
        return sorted({a for (a, k) in self.first_firing if k == key})

    def sent(self, *, receiver: str, kind: str | None = None) -> list[Any]:
        """Notifications of ``receiver`` (and ``kind``) received during the run."""
        return [
            n
            for n in self.notifications
            if n.receiver == receiver and (kind is None or n.kind == kind)
        ]

    def mine(self, note: Any) -> bool:
        """True when ``note`` is about this run: it names one of the run's services, or an alert
        that fired for them (alerts of earlier runs, still in Alertmanager, do not count)."""
        text = note_text(note)
        ours = set(self.services.values())
        names = {a for (a, k) in self.first_firing if k in ours}
        return any(s in text for s in ours) or any(a in text for a in names)

    def seen_everything(self) -> bool:
        """True once the traffic is over and every live check has what it looks for.

        The run then ends early; without it (a rule that never fires, a receiver that never
        gets a message) it lasts until its deadline.
        """

        latency, errors = self.services.get("latency", "?"), self.services.get("errors", "?")
        latency_done = any(
            note_status(n) == "resolved" and latency in note_text(n)
            for n in self.sent(receiver="slack-ml")
        )
        errors_done = any(errors in note_text(n) for n in self.sent(receiver="pager")) and any(
            k == errors and "inhibited" in states for (_, k), states in self.am_states.items()
        )
        return (
            self.traffic_done
            and latency_done
            and errors_done
            and self.firing("GPUMemoryWillExhaust") is not None
            and any(n.kind == "email" and self.mine(n) for n in self.notifications)
        )


def _alert_key(labels: Mapping[str, str]) -> str:
    return str(labels.get("service") or (f"gpu{labels['gpu']}" if "gpu" in labels else ""))


def poll_alerts(stack: Stack, run: LiveRun, stop: threading.Event, interval_s: float = 0.3) -> None:
    """Until ``stop`` is set, record into ``run`` what Prometheus, Alertmanager and the sinks
    show: first pending/firing time and details of each alert (by name and ``service``/``gpu``),
    resolutions, Alertmanager states and the notifications received since ``run.started``.

    Run it in a thread; the live run of exercise 06 and the capstone drills share it.
    """
    prom, am, sinks = stack.prometheus, stack.alertmanager, stack.sinks
    active: set[tuple[str, str]] = set()
    while not stop.is_set():
        now = time.time()
        seen: set[tuple[str, str]] = set()
        try:
            for alert in prom.alerts():
                labels = alert.get("labels") or {}
                key = (str(labels.get("alertname", "")), _alert_key(labels))
                seen.add(key)
                target = run.first_firing if alert.get("state") == "firing" else run.first_pending
                target.setdefault(key, now)
                if alert.get("state") == "firing":
                    run.details.setdefault(
                        key,
                        {
                            "labels": dict(labels),
                            "annotations": dict(alert.get("annotations") or {}),
                        },
                    )
            for alert in am.alerts():
                labels = alert.get("labels") or {}
                if labels.get("probe"):
                    continue
                key = (str(labels.get("alertname", "")), _alert_key(labels))
                state = "inhibited" if (alert.get("status") or {}).get("inhibitedBy") else "active"
                run.am_states.setdefault(key, set()).add(state)
            run.notifications = sinks.notifications(since=run.started)
        except Exception as exc:  # keep polling; report the first few problems
            if len(run.errors) < 5:
                run.errors.append(f"{type(exc).__name__}: {exc}")
        for key in active - seen:
            if key in run.first_firing:
                run.resolved_at.setdefault(key, now)
        active = {k for k in seen if k in run.first_firing}
        stop.wait(interval_s)


def run_live(
    stack: Stack,
    rules_path: Path,
    alertmanager_path: Path,
    *,
    workdir: Path,
    job: str = "ml-service",
    traffic_s: float = 15.0,
    settle_s: float = 10.0,
    factor: float = LIVE_FACTOR,
) -> LiveRun:
    """Fire the student's time-compressed rules live through their Alertmanager configuration.

    Three gateways of the grader (:data:`LIVE_ROLES`) are scraped under ``job``, and a simulated
    GPU source of the grader's own under :data:`LIVE_GPU_JOB` (the stack's may read a real GPU
    through NVML, which cannot leak on demand; the grader's leaves the stack's alone). For
    ``traffic_s`` seconds, all at once, one gateway gets steady traffic, one a latency spike, one
    an error burst, and the GPU leaks. Prometheus's and Alertmanager's alerts and the sinks are
    polled throughout; the run ends as soon as every live check has its evidence
    (:meth:`LiveRun.seen_everything`), at the latest ``settle_s`` after the traffic. Rules,
    targets and the Alertmanager configuration are restored whatever happens.
    """
    from prometheus_client import CollectorRegistry

    from ml_service.gpu import GpuServer, SimulatedGPU
    from ml_service.serve import start_services
    from ml_service.service_metrics import prometheus_hooks
    from ml_service.traffic import Scenario, run_traffic

    run_id = uuid.uuid4().hex[:6]
    run = LiveRun(
        started=time.time(),
        services={role: f"ex06-{role}-{run_id}" for role in (*LIVE_ROLES, "gpu")},
    )
    compressed = workdir / "ex06_live_rules.yml"
    compressed.write_text(compress_rules(rules_path.read_text(), factor=factor))
    rendered = workdir / "alertmanager.live.yml"
    rendered.write_text(
        render_alertmanager_config(alertmanager_path.read_text(), sink_addresses(stack), fast=True)
    )
    gateways: list[Any] = []
    device = SimulatedGPU()
    gpu = GpuServer(device)
    gpu_target = f"{gpu.start()}/metrics"
    stop = threading.Event()
    poller = threading.Thread(target=poll_alerts, args=(stack, run, stop), daemon=True)
    try:
        stack.register_target(LIVE_GPU_JOB, gpu_target, labels={"service": run.services["gpu"]})
        for role in LIVE_ROLES:
            svc = start_services(hooks=prometheus_hooks(CollectorRegistry()))
            gateways.append(svc)
            stack.register_target(
                job, f"{svc.gateway_url}/metrics", labels={"service": run.services[role]}
            )
        stack.apply_alertmanager_config(rendered)
        stack.apply_rules([compressed])
        stack.prometheus.wait_for(
            f'count(up{{service=~"ex06-.*-{run_id}"}} == 1) >= {len(LIVE_ROLES) + 1}', timeout=15
        )
        run.started = time.time()
        poller.start()
        # Effects from 5% of the window on: long enough for the slowest compressed for:
        # (15m -> 8 s) plus its windows, and for the latency alert to resolve before the end.
        plans = {
            "steady": (Scenario.named("steady"), 6.0),
            "latency": (Scenario.named("latency_spike", start=0.05, end=0.6, delay_s=1.5), 8.0),
            "errors": (Scenario.named("error_burst", start=0.05, end=0.95, error_rate=0.5), 8.0),
        }
        failures: list[str] = []

        def drive(svc: Any, role: str, seed: int) -> None:
            scenario, rate = plans[role]
            try:
                run_traffic(
                    svc.gateway_url,
                    scenario=scenario,
                    rate=rate,
                    duration_s=traffic_s,
                    concurrency=24,
                    seed=seed,
                    timeout_s=10.0,
                )
            except Exception as exc:  # reported with the service it hit
                failures.append(f"{run.services[role]}: {type(exc).__name__}: {exc}")

        threads = [
            threading.Thread(target=drive, args=(svc, role, 600 + i))
            for i, (svc, role) in enumerate(zip(gateways, LIVE_ROLES, strict=True))
        ]
        for thread in threads:
            thread.start()
        # The simulated device leaks by itself (used memory grows with time): no traffic needed.
        device.simulate(load_rps=8.0, leak_mib_per_s=4800.0)
        for thread in threads:
            thread.join()
        device.simulate(reset=True)
        run.errors.extend(failures)
        run.traffic_done = True
        deadline = time.time() + settle_s
        while time.time() < deadline and not run.seen_everything():
            time.sleep(0.2)
        run.ended = time.time()
        return run
    finally:
        stop.set()
        if poller.is_alive():
            poller.join(timeout=5)
        with contextlib.suppress(Exception):
            run.notifications = stack.sinks.notifications(since=run.started)
        for svc in gateways:
            with contextlib.suppress(Exception):
                stack.unregister_target(job, f"{svc.gateway_url}/metrics")
            with contextlib.suppress(Exception):
                svc.stop()
        with contextlib.suppress(Exception):
            stack.unregister_target(LIVE_GPU_JOB, gpu_target)
        gpu.stop()
        with contextlib.suppress(Exception):
            stack.remove_rules([compressed.stem])
        with contextlib.suppress(Exception):
            stack.reset_config("alertmanager")


# --- the release: starter versions of the solution files ----------------------------------------
def starter_dashboard(text: str) -> str:
    """A dashboard with every panel query emptied (the layout stays; the student writes queries)."""
    import json

    document = json.loads(text)

    def blank(panels: list[Any]) -> None:
        for panel in panels:
            for target in panel.get("targets") or []:
                if "expr" in target:
                    target["expr"] = ""
            blank(panel.get("panels") or [])

    blank(document.get("panels") or [])
    return json.dumps(document, indent=2) + "\n"


def make_starter_files(folder: Path) -> list[Path]:
    """Turn a copy of the solution folder into the starter: solution regions of the YAML and
    markdown files emptied, dashboard queries blanked. Returns the files changed.

    ``nbgrader generate_assignment`` only clears notebooks; the release step calls this on
    ``notebooks/ex06_alerting`` after it.
    """
    changed = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix in (".yml", ".yaml"):
            new = clear_solution_regions(text)
        elif path.suffix == ".md":
            new = clear_solution_regions(text, markdown=True)
        elif path.suffix == ".json" and path.parent.name == "dashboards":
            new = starter_dashboard(text)
        else:
            continue
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed
