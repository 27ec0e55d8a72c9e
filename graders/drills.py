"""Incident drills: the module's four case studies injected into the student's own system.

``python -m graders drill [NAME] [--folder notebooks/capstone] [--seed S] [--json]`` (``make drill
NAME=uber-drift``). Each drill starts the completed capstone system of ``--folder``
(:func:`graders.capstone_system.start_system`), sends a quiet lead-in of steady traffic whose
length is drawn from the seed (the student cannot know when the incident comes, a rerun with the
same seed is the same drill), then injects the incident with the traffic scenarios of
:mod:`ml_service.traffic` and measures, from the backends only:

* **time to detect** — injection to the first alert of the system at a receiver of the sinks, or
  to the drift job's decision where the incident is a data problem;
* the **right alert** — the drill's alert reached a receiver, with the severity expected and a
  runbook link (a ``runbooks/<name>.md`` link must name a page of the folder);
* **no false alarm** in the lead-in — no alert of the system firing, no drift or data-quality
  decision, before the injection;
* the **evidence** to diagnose it — per drill (the slow span in Tempo, the GPU memory trend in
  Prometheus, the trace id in the error logs in Loki, the drift job's metrics).

Time runs compressed, like exercise 06's live run: the rules' durations are divided by
:data:`FACTOR` (60: a real minute is a lab second), so ``for: 5m`` waits 5 s. Budgets are stated
in real-world minutes and the seconds they compress to. A drill passes when all four hold and
the time to detect is within its budget.

Example:
    >>> [d.name for d in DRILLS.values()]
    ['uber-drift', 'netflix-latency', 'airbnb-pipeline', 'doordash-gpu-leak']
    >>> lead_in_s("uber-drift", seed=0) == lead_in_s("uber-drift", seed=0)
    True
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import shutil
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from graders.capstone_system import System, check_folder, start_system
from graders.errors import GradingError
from graders.ex06_checks import LiveRun, note_status, note_text, poll_alerts
from graders.registry import Mutant
from lab_stack import Stack
from lab_stack.settings import PROJECT_ROOT, Settings

__all__ = [
    "DRILLS",
    "DRILL_MUTANTS",
    "FACTOR",
    "SOLUTION_NOTEBOOK",
    "Drill",
    "DrillResult",
    "complete_folder",
    "lead_in_s",
    "main",
    "mttd",
    "mutant_folder",
    "render",
    "run_drill",
    "run_drills",
]

#: Time compression of the drills: a real-world minute is a lab second.
FACTOR = 60.0
#: Requests per second of the drills' traffic (lead-in and incident).
RATE = 10.0
#: The quiet lead-in lasts LEAD_IN_S plus a seeded share of LEAD_IN_JITTER_S.
LEAD_IN_S = 8.0
LEAD_IN_JITTER_S = 6.0
#: Default folder of the student's completed capstone.
DEFAULT_FOLDER = PROJECT_ROOT / "notebooks" / "capstone"
#: How long the evidence may take to reach the backends once the incident is over (shipping, batching).
EVIDENCE_WAIT_S = 10.0


@dataclass(frozen=True)
class Drill:
    """One drill: the case study, the incident injected, what must catch it and how fast.

    Attributes:
        name: the CLI name (``uber-drift``).
        case: the case study in a few words.
        summary: one line for ``make drill``.
        scenario / overrides: the traffic scenario (:meth:`ml_service.traffic.Scenario.named`).
        alert: the alert that must reach a receiver; severities: the severities accepted for it.
        decision: the drift job's decision key that detects it (``drift``/``data_quality``), or "".
        budget_min: the detection budget in real-world minutes (``budget_s`` compressed).
        watch_s: how long after the injection the drill watches at most (compressed seconds).
        signal: the signal the drill needs, named in failure messages.
    """

    name: str
    case: str
    summary: str
    scenario: str
    overrides: Mapping[str, Any]
    alert: str
    severities: tuple[str, ...]
    decision: str
    budget_min: float
    watch_s: float
    signal: str

    @property
    def budget_s(self) -> float:
        """The budget in compressed (lab) seconds."""
        return self.budget_min * 60.0 / FACTOR


#: Exhaustion of the leaking GPU, in compressed seconds after the injection (30 real minutes).
GPU_EXHAUSTION_S = 30.0

DRILLS: dict[str, Drill] = {
    d.name: d
    for d in (
        Drill(
            name="uber-drift",
            case="Uber: the ETA model lost 15% accuracy to drift",
            summary="inputs shift (amount, distance, merchant mix); the drift job must notice",
            scenario="covariate_drift",
            overrides={
                "shifts": {
                    "amount": "large",
                    "distance_from_home_km": "large",
                    "merchant_category": "large",
                }
            },
            alert="DataDriftDetected",
            severities=("warning", "critical"),
            decision="drift",
            budget_min=30.0,
            watch_s=40.0,
            signal="the scheduled drift job's decision (ml_dataset_drift) and DataDriftDetected",
        ),
        Drill(
            name="netflix-latency",
            case="Netflix: latency spikes found by tracing",
            summary="the feature service slows to 1.5 s a lookup; p99 > 1 s must page before users leave",
            scenario="latency_spike",
            overrides={"delay_s": 1.5},
            alert="HighPredictionLatency",
            severities=("warning",),
            decision="",
            budget_min=15.0,
            watch_s=25.0,
            signal="HighPredictionLatency (p99 > 1 s for 5m, compressed) and the slow span in Tempo",
        ),
        Drill(
            name="airbnb-pipeline",
            case="Airbnb: a feature pipeline failed silently",
            summary="avg_amount_30d arrives null for 60% of requests; answers stay 200",
            scenario="feature_pipeline_failure",
            overrides={
                "null_features": ("avg_amount_30d",),
                "null_share": 0.6,
                "constant_features": {},
            },
            alert="DataQualityIncident",
            severities=("warning", "critical"),
            decision="data_quality",
            budget_min=30.0,
            watch_s=40.0,
            signal="the drift job's data-quality decision (missing share) and DataQualityIncident",
        ),
        Drill(
            name="doordash-gpu-leak",
            case="DoorDash: a GPU memory leak failed 30% of predictions",
            summary="GPU memory leaks, full after 30 min; then 30% of predictions fail",
            scenario="gpu_memory_leak",
            overrides={"oom_error_share": 0.3},
            alert="GPUMemoryWillExhaust",
            severities=("warning", "critical"),
            decision="",
            budget_min=20.0,
            watch_s=45.0,
            signal="GPUMemoryWillExhaust (predict_linear on GPU memory) before the GPU is full",
        ),
    )
}

#: One mutant of the capstone solution per drill: the signal the drill needs, removed.
#: Replacements apply to ``solutions/capstone/capstone.ipynb`` (graders.mutants.apply_mutant).
DRILL_MUTANTS: dict[str, Mutant] = {
    m.aims[0]: m
    for m in (
        Mutant(
            name="drift_job_runs_once",
            description="the drift job runs once and exits: drift is checked on no schedule",
            aims=("uber-drift",),
            replace=(("        if args.once:\n            return 0\n", "        return 0\n"),),
        ),
        Mutant(
            name="latency_alert_dead_metric",
            description="HighPredictionLatency reads a metric that does not exist: it can never fire",
            aims=("netflix-latency",),
            replace=(
                (
                    "ml_prediction_duration_seconds_bucket[2m]",
                    "ml_prediction_latency_seconds_bucket[2m]",
                ),
            ),
        ),
        Mutant(
            name="missing_share_after_dropna",
            description="the missing share is computed after dropping the nulls: always 0",
            aims=("airbnb-pipeline",),
            replace=(
                (
                    "share = float(cur.isna().mean()) if len(cur) else 0.0",
                    "share = float(cur.dropna().isna().mean()) if len(cur) else 0.0",
                ),
            ),
        ),
        Mutant(
            name="gpu_alert_at_exhaustion",
            description="the GPU memory alert fires when the memory is gone, not on its trend",
            aims=("doordash-gpu-leak",),
            replace=(
                (
                    "predict_linear(DCGM_FI_DEV_FB_FREE[30m], 3600) < 0",
                    "DCGM_FI_DEV_FB_FREE < 1",
                ),
            ),
        ),
    )
}
#: The capstone solution notebook the mutants apply to.
SOLUTION_NOTEBOOK = PROJECT_ROOT / "solutions" / "capstone" / "capstone.ipynb"


def lead_in_s(name: str, *, seed: int) -> float:
    """The quiet lead-in of drill ``name`` for ``seed``: reproducible, not announced."""
    rng = random.Random(f"{name}:{seed}")
    return round(LEAD_IN_S + rng.uniform(0.0, LEAD_IN_JITTER_S), 2)


def complete_folder(notebook: Path, dest: Path, *, settings: Settings) -> Path:
    """Run a copy of a capstone ``notebook`` in a fresh kernel; copy the folder it completed
    (the files its cells wrote) to ``dest``; return ``dest``.

    Raises:
        GradingError: the notebook did not run to its end.
    """
    from graders.execute import run_notebook

    with run_notebook(notebook, settings=settings, cell_timeout=300, total_timeout=600) as run:
        if not run.ok:
            raise GradingError(
                f"{notebook} did not run to its end: {run.reason}. Hint: run it in JupyterLab "
                "and fix the failing cell first."
            )
        shutil.copytree(run.workdir, dest, dirs_exist_ok=True)
    return dest


def mutant_folder(drill: str, dest: Path, *, settings: Settings) -> Path:
    """The completed folder of the capstone solution with ``drill``'s mutant applied (under
    ``dest/<mutant>``; run once, reused when it is already there)."""
    import nbformat

    from graders.mutants import apply_mutant

    mutant = DRILL_MUTANTS[drill]
    folder = dest / mutant.name
    if (folder / "reference.pkl").is_file():
        return folder
    source = dest / f"{mutant.name}-source"
    shutil.copytree(SOLUTION_NOTEBOOK.parent, source, dirs_exist_ok=True)
    path = source / SOLUTION_NOTEBOOK.name
    nb = apply_mutant(nbformat.read(path, as_version=4), mutant)  # type: ignore[no-untyped-call]
    nbformat.write(nb, path)  # type: ignore[no-untyped-call]
    return complete_folder(path, folder, settings=settings)


# --- results --------------------------------------------------------------------------------
@dataclass
class DrillResult:
    """What one drill measured; ``passed`` when every part holds."""

    drill: str
    service: str
    seed: int
    lead_in_s: float
    budget_s: float
    budget_min: float
    injected_at: float = 0.0
    detected_at: float | None = None
    detected_by: str = ""
    alert_at: float | None = None
    alert_severity: str = ""
    alert_runbook: str = ""
    alert_receivers: list[str] = field(default_factory=list)
    false_alarms: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    missing_evidence: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def ttd_s(self) -> float | None:
        """Time to detect in compressed seconds (None: undetected)."""
        return None if self.detected_at is None else self.detected_at - self.injected_at

    @property
    def ttd_min(self) -> float | None:
        """Time to detect in real-world minutes."""
        return None if self.ttd_s is None else self.ttd_s * FACTOR / 60.0

    @property
    def passed(self) -> bool:
        """True when detected within budget, by the right alert, with evidence, no false alarm."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the derived figures."""
        return {
            **asdict(self),
            "ttd_s": self.ttd_s,
            "ttd_min": self.ttd_min,
            "passed": self.passed,
        }


def mttd(results: Sequence[DrillResult]) -> float | None:
    """Mean time to detect (compressed seconds) over the detected drills; None if none was."""
    times = [r.ttd_s for r in results if r.ttd_s is not None]
    return statistics.fmean(times) if times else None


# --- the run --------------------------------------------------------------------------------
def _ours(run: LiveRun, system: System) -> set[str]:
    return {system.service, system.gpu_service}


def _notes(run: LiveRun, system: System, alertname: str | None = None) -> list[Any]:
    keys = _ours(run, system)
    out = []
    for note in run.notifications:
        text = note_text(note)
        if note_status(note) == "resolved" or not any(k in text for k in keys):
            continue
        if alertname is not None and alertname not in (*note.alertnames, *re.findall(r"\w+", text)):
            continue
        out.append(note)
    return sorted(out, key=lambda n: n.received_at)


def _note_names(note: Any, run: LiveRun, system: System) -> list[str]:
    if note.alertnames:
        return list(note.alertnames)
    text = note_text(note)
    return sorted({a for (a, k) in run.first_firing if k in _ours(run, system) and a in text})


def _decisions_after(system: System, key: str, since: float) -> list[dict[str, Any]]:
    return [
        d
        for d in system.drift_decisions()
        if d.get(key) is True and float(d.get("ts", d.get("received_at", 0.0))) >= since
    ]


def _runbook_problem(url: str, folder: Path) -> str | None:
    if not url.strip():
        return "no runbook_url annotation"
    match = re.search(r"runbooks/([A-Za-z0-9_.-]+\.md)(?:#.*)?$", url)
    if match and not (folder / "runbooks" / match.group(1)).is_file():
        return f"runbook_url {url!r} names runbooks/{match.group(1)}, which the folder lacks"
    return None


class _Evidence:
    """The per-drill evidence checks, asked of the backends after the incident."""

    def __init__(self, stack: Stack, system: System, truth: Any, result: DrillResult) -> None:
        self.stack, self.system, self.truth, self.result = stack, system, truth, result

    def _log_lines(self, query_suffix: str, *, start: float) -> list[dict[str, Any]]:
        data = self.stack.loki.query_range(
            self.system.log_selector + query_suffix, start=start, end=time.time() + 1, limit=200
        )
        lines = []
        for stream in data.get("result") or []:
            for _, line in stream.get("values") or []:
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if isinstance(record, dict):
                        lines.append(record)
        return lines

    def slow_span(self, delay_s: float) -> tuple[str | None, str | None]:
        """The slow span under a slow prediction's trace, or why there is none."""
        slow_ids = [
            r.trace_id
            for r in self.truth.records
            if r.in_effect and r.trace_id and (r.latency_s or 0) > 1.0
        ]
        if not slow_ids:
            with contextlib.suppress(Exception):
                slow_ids = [
                    str(r["trace_id"])
                    for r in self._log_lines(
                        " | json | latency_ms > 1000", start=self.result.injected_at
                    )
                    if re.fullmatch(r"[0-9a-f]{32}", str(r.get("trace_id", "")))
                ]
        if not slow_ids:
            return None, (
                "no trace id of a slow prediction (none in the responses, none in the log lines "
                "with latency_ms > 1000 in Loki)"
            )
        from lab_stack.errors import LabError

        deadline = time.monotonic() + EVIDENCE_WAIT_S
        tried: set[str] = set()
        while time.monotonic() < deadline:
            for trace_id in slow_ids[:5]:
                try:
                    spans = self.stack.tempo.trace_spans(trace_id)
                except LabError:
                    continue
                tried.add(trace_id)
                slow = [s for s in spans if not s.is_root and s.duration_ns >= 0.8 * delay_s * 1e9]
                if slow:
                    deepest = max(slow, key=lambda s: s.start_ns)
                    return (
                        f"slow span {deepest.name!r} of {deepest.service_name} "
                        f"{deepest.duration_ns / 1e9:.2f} s in trace {trace_id}",
                        None,
                    )
            time.sleep(1.0)
        if tried:
            return None, (
                f"traces {sorted(tried)[:2]} are in Tempo but no span under the root lasts "
                f"{0.8 * delay_s:.1f} s: the slow call has no span of its own"
            )
        return None, f"no trace of a slow prediction reached Tempo (tried {slow_ids[:3]})"

    def gpu_trend(self) -> tuple[str | None, str | None]:
        """The GPU memory rise in Prometheus over the incident."""
        expr = f'max(DCGM_FI_DEV_FB_USED{{service="{self.system.gpu_service}"}})'
        data = self.stack.prometheus.query_range(
            expr, start=self.result.injected_at - 2, end=time.time(), step=1
        )
        values = [float(v) for s in data.get("result") or [] for _, v in s.get("values") or []]
        if len(values) < 3:
            return None, f"{expr} has {len(values)} points over the incident in Prometheus"
        rise = values[-1] - values[0]
        if rise <= 0.25 * values[-1]:
            return None, f"{expr} rose only {rise:.0f} MiB over the incident"
        return f"GPU memory rose {values[0]:.0f} -> {values[-1]:.0f} MiB in Prometheus", None

    def error_trace_id(self) -> tuple[str | None, str | None]:
        """An error log line in Loki that carries a trace id."""
        deadline = time.monotonic() + EVIDENCE_WAIT_S
        seen = 0
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                lines = self._log_lines(' |= "error"', start=self.result.injected_at)
                errors = [r for r in lines if str(r.get("level", "")).lower() == "error"]
                seen = len(errors)
                for record in errors:
                    trace_id = str(record.get("trace_id", ""))
                    if re.fullmatch(r"[0-9a-f]{32}", trace_id):
                        return f"error log line in Loki with trace_id {trace_id}", None
            time.sleep(1.0)
        if seen:
            return None, f"{seen} error lines in Loki, none with a 32-hex trace_id"
        return None, 'no line with level "error" in Loki for the failed predictions'

    def drift_metrics(self, kind: str) -> tuple[str | None, str | None]:
        """The drift job's per-feature metrics in Prometheus name the broken features."""
        service = self.system.service
        if kind == "drift":
            expr = f'max by (feature) (ml_feature_drifted{{service="{service}"}}) == 1'
            expected = set(self.truth.drifted_features)
        else:
            expr = f'max by (feature) (ml_feature_missing_share{{service="{service}"}}) > 0.1'
            expected = set(self.truth.scenario.null_features)
        found: set[str] = set()
        with contextlib.suppress(Exception):
            found = {
                str(s.metric.get("feature")) for s in self.stack.prometheus.query_samples(expr)
            }
        if found & expected:
            return f"{expr.split(' ==')[0].split(' >')[0]} names {sorted(found & expected)}", None
        return None, f"{expr} returns {sorted(found) or 'nothing'} (expected {sorted(expected)})"


def _collect_evidence(drill: Drill, ev: _Evidence) -> list[tuple[str | None, str | None]]:
    if drill.name == "netflix-latency":
        return [ev.slow_span(float(drill.overrides.get("delay_s", 1.5)))]
    if drill.name == "doordash-gpu-leak":
        return [ev.gpu_trend(), ev.error_trace_id()]
    return [ev.drift_metrics(drill.decision)]


def run_drill(
    drill: Drill | str,
    folder: Path,
    stack: Stack,
    *,
    seed: int = 0,
    on_status: Callable[[str], None] | None = None,
) -> DrillResult:
    """Run one drill on the capstone system of ``folder``; return what it measured.

    Raises:
        GradingError: the folder is incomplete or its system would not start.
    """
    from ml_service.traffic import Scenario, run_traffic

    drill = DRILLS[drill] if isinstance(drill, str) else drill
    say = on_status or (lambda _: None)
    folder = Path(folder).resolve()
    check_folder(folder)
    service = f"drill-{drill.name.split('-')[0]}-{uuid.uuid4().hex[:6]}"
    lead = lead_in_s(drill.name, seed=seed)
    result = DrillResult(
        drill=drill.name,
        service=service,
        seed=seed,
        lead_in_s=lead,
        budget_s=drill.budget_s,
        budget_min=drill.budget_min,
    )
    wall = time.monotonic()
    say(f"{drill.name}: starting the system of {folder}")
    with start_system(folder, stack, service=service, factor=FACTOR) as system:
        run = LiveRun(started=system.started_at, services={"service": service})
        stop_poll = threading.Event()
        poller = threading.Thread(
            target=poll_alerts, args=(stack, run, stop_poll), name="drill-poll", daemon=True
        )
        poller.start()
        try:
            overrides = dict(drill.overrides)
            if drill.scenario == "gpu_memory_leak":
                device = system.gpu
                overrides.setdefault(
                    "leak_mib_per_s",
                    (device.total_mib - device.base_used_mib) / GPU_EXHAUSTION_S,
                )
            scenario = Scenario.named(drill.scenario, start=0.0, end=1.0, **overrides)
            common: dict[str, Any] = {
                "rate": RATE,
                "concurrency": 32,
                "gpu_url": system.gpu_url,
                "timeout_s": 10.0,
            }
            say(f"{drill.name}: quiet lead-in")
            run_traffic(system.gateway_url, scenario="steady", duration_s=lead, seed=seed, **common)
            stop = threading.Event()
            box: dict[str, Any] = {}

            def incident() -> None:
                try:
                    box["truth"] = run_traffic(
                        system.gateway_url,
                        scenario=scenario,
                        duration_s=drill.watch_s,
                        seed=seed + 1,
                        stop=stop,
                        **common,
                    )
                except Exception as exc:  # reported as a problem of the run
                    box["error"] = f"{type(exc).__name__}: {exc}"

            result.injected_at = time.time()
            say(f"{drill.name}: incident injected")
            traffic = threading.Thread(target=incident, name="drill-incident", daemon=True)
            traffic.start()
            while traffic.is_alive():
                if _done(drill, run, system, result):
                    stop.set()
                traffic.join(0.25)
            if "error" in box:
                result.problems.append(f"the incident's traffic failed: {box['error']}")
                return result
            truth = box["truth"]
            if truth.effect_started_at:
                result.injected_at = truth.effect_started_at
            say(f"{drill.name}: collecting the evidence")
            found = _collect_evidence(drill, _Evidence(stack, system, truth, result))
            time.sleep(0.5)
        finally:
            stop_poll.set()
            poller.join(5.0)
        _judge(drill, run, system, result, found)
    result.wall_s = time.monotonic() - wall
    return result


def _expected_note(drill: Drill, run: LiveRun, system: System, after: float) -> Any | None:
    notes = [n for n in _notes(run, system, drill.alert) if n.received_at >= after]
    return notes[0] if notes else None


def _done(drill: Drill, run: LiveRun, system: System, result: DrillResult) -> bool:
    """True once the drill has what it needs: the expected alert at a receiver, the decision,
    and (for the GPU leak) a few seconds of failed predictions after the exhaustion."""
    after = result.injected_at
    if _expected_note(drill, run, system, after) is None:
        return False
    if drill.decision and not _decisions_after(system, drill.decision, after):
        return False
    if drill.scenario == "gpu_memory_leak":
        return time.time() - after > GPU_EXHAUSTION_S + 3.0
    return True


def _judge(
    drill: Drill,
    run: LiveRun,
    system: System,
    result: DrillResult,
    evidence: Sequence[tuple[str | None, str | None]],
) -> None:
    at = result.injected_at
    keys = _ours(run, system)
    # False alarms: anything of ours firing, notified or decided before the injection.
    for (alertname, key), when in sorted(run.first_firing.items(), key=lambda kv: kv[1]):
        if key in keys and when < at:
            result.false_alarms.append(f"{alertname} fired {at - when:.1f} s before the injection")
    for note in _notes(run, system):
        if note.received_at < at:
            names = ",".join(_note_names(note, run, system)) or "?"
            result.false_alarms.append(f"{names} reached {note.receiver} during the lead-in")
    for decision in system.drift_decisions():
        ts = float(decision.get("ts", decision.get("received_at", 0.0)))
        if ts < at and (decision.get("drift") is True or decision.get("data_quality") is True):
            result.false_alarms.append(
                f"the drift job decided drift={decision.get('drift')} "
                f"data_quality={decision.get('data_quality')} during the lead-in"
            )
    result.false_alarms = list(dict.fromkeys(result.false_alarms))
    # Detection: the first alert of ours at a receiver, or the drift job's decision.
    candidates: list[tuple[float, str]] = []
    later = [n for n in _notes(run, system) if n.received_at >= at]
    if later:
        first = later[0]
        names = ",".join(_note_names(first, run, system)) or "an alert"
        candidates.append((first.received_at, f"{names} at {first.receiver}"))
    if drill.decision:
        decided = _decisions_after(system, drill.decision, at)
        if decided:
            d = decided[0]
            candidates.append(
                (
                    float(d.get("received_at") or d.get("ts") or 0.0),
                    f"drift job: {drill.decision}=true",
                )
            )
    if candidates:
        result.detected_at, result.detected_by = min(candidates)
    # The right alert.
    expected = _expected_note(drill, run, system, at)
    if expected is not None:
        result.alert_at = expected.received_at
        result.alert_receivers = sorted(
            {n.receiver for n in _notes(run, system, drill.alert) if n.received_at >= at}
        )
        details = next(
            (v for (a, k), v in run.details.items() if a == drill.alert and k in keys), {}
        )
        result.alert_severity = str((details.get("labels") or {}).get("severity", ""))
        result.alert_runbook = str((details.get("annotations") or {}).get("runbook_url", ""))
    for found, missing in evidence:
        if found:
            result.evidence.append(found)
        if missing:
            result.missing_evidence.append(missing)
    # Verdict.
    if result.ttd_s is None:
        result.problems.append(
            f"undetected: nothing reached a receiver within {drill.watch_s:.0f} s of the "
            f"injection. Missing signal: {drill.signal}"
        )
    elif result.ttd_s > drill.budget_s:
        result.problems.append(
            f"detected after {result.ttd_s:.1f} s ({result.ttd_min:.0f} real minutes) by "
            f"{result.detected_by}, past the budget of {drill.budget_s:.0f} s "
            f"({drill.budget_min:.0f} min). Missing signal: {drill.signal}"
        )
    if expected is None:
        fired = sorted({a for (a, k) in run.first_firing if k in keys})
        result.problems.append(
            f"{drill.alert} never reached a receiver (alerts of this system that fired: "
            f"{', '.join(fired) or 'none'}). Missing signal: {drill.signal}"
        )
    else:
        if result.alert_severity not in drill.severities:
            result.problems.append(
                f"{drill.alert} carries severity {result.alert_severity or '(none)'!r}; "
                f"expected {' or '.join(drill.severities)}"
            )
        problem = _runbook_problem(result.alert_runbook, system.folder)
        if problem:
            result.problems.append(f"{drill.alert}: {problem}")
    if result.false_alarms:
        result.problems.append(
            f"false alarm in the quiet lead-in: {'; '.join(result.false_alarms[:3])}"
        )
    for missing in result.missing_evidence:
        result.problems.append(f"evidence missing: {missing}")
    if run.errors:
        result.evidence.append(f"(backend polling hiccups: {run.errors[0]})")


def run_drills(
    names: Sequence[str],
    folder: Path,
    stack: Stack,
    *,
    seed: int = 0,
    on_status: Callable[[str], None] | None = None,
) -> list[DrillResult]:
    """:func:`run_drill` for each of ``names``, one after the other (each with its own system)."""
    return [run_drill(n, folder, stack, seed=seed, on_status=on_status) for n in names]


# --- the report -----------------------------------------------------------------------------
def _fmt_ttd(result: DrillResult) -> str:
    if result.ttd_s is None:
        return "[red]undetected[/]"
    colour = "green" if result.ttd_s <= result.budget_s else "red"
    return f"[{colour}]{result.ttd_s:.1f} s ({result.ttd_min:.0f} min)[/]"


def render(results: Sequence[DrillResult], console: Console) -> None:
    """A Rich table per drill, then the overall MTTD."""
    for result in results:
        drill = DRILLS[result.drill]
        verdict = "[green]PASS[/]" if result.passed else "[red]FAIL[/]"
        table = Table(title=f"{drill.name} — {drill.case}   {verdict}", show_header=False)
        table.add_column("what", style="bold")
        table.add_column("measured", overflow="fold")
        table.add_row(
            "incident", f"{drill.scenario} after a quiet lead-in of {result.lead_in_s:.1f} s"
        )
        table.add_row(
            "budget", f"{drill.budget_min:.0f} real-world min = {drill.budget_s:.0f} s compressed"
        )
        table.add_row("time to detect", _fmt_ttd(result))
        table.add_row("detected by", result.detected_by or "-")
        alert = (
            f"{drill.alert} at {', '.join(result.alert_receivers)} after "
            f"{(result.alert_at or 0) - result.injected_at:.1f} s; severity "
            f"{result.alert_severity or '(none)'}; runbook {result.alert_runbook or '(none)'}"
            if result.alert_at
            else f"[red]{drill.alert} never reached a receiver[/]"
        )
        table.add_row("right alert", alert)
        table.add_row(
            "false alarms",
            "[green]none[/]"
            if not result.false_alarms
            else "[red]" + "; ".join(result.false_alarms) + "[/]",
        )
        table.add_row(
            "evidence",
            "\n".join([*result.evidence, *(f"[red]{m}[/]" for m in result.missing_evidence)])
            or "-",
        )
        for problem in result.problems:
            table.add_row("[red]problem[/]", problem)
        console.print(table)
    value = mttd(results)
    passed = sum(r.passed for r in results)
    undetected = sum(r.ttd_s is None for r in results)
    console.print(
        f"[bold]MTTD[/] {'-' if value is None else f'{value:.1f} s compressed = {value * FACTOR / 60:.1f} real-world min'}"
        f" over {len(results) - undetected} detected drill(s); {undetected} undetected; "
        f"{passed}/{len(results)} passed"
    )


def _list(console: Console) -> None:
    table = Table(title="Incident drills (make drill NAME=...)")
    for column in ("drill", "case study", "what happens", "budget"):
        table.add_column(column)
    for d in DRILLS.values():
        table.add_row(
            d.name, d.case, d.summary, f"{d.budget_min:.0f} min ({d.budget_s:.0f} s compressed)"
        )
    console.print(table)


@click.command()
@click.argument("name", required=False)
@click.option(
    "--folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_FOLDER,
    show_default=True,
    help="the completed capstone folder (run every cell of capstone.ipynb first)",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="seed of the unannounced moment"
)
@click.option("--all", "run_all", is_flag=True, help="run every drill, one after the other")
@click.option("--json", "as_json", is_flag=True, help="print the results as JSON")
def main(name: str | None, folder: Path, seed: int, run_all: bool, as_json: bool) -> None:
    """Run incident drill NAME against your capstone system; without NAME, list the drills."""
    console = Console(stderr=as_json)
    if name is None and not run_all:
        _list(console)
        return
    if name is not None and name not in DRILLS:
        raise click.BadParameter(
            f"no drill {name!r}. Hint: one of {', '.join(DRILLS)} (or `make drill` to list them).",
            param_hint="NAME",
        )
    import lab_stack

    names = list(DRILLS) if run_all else [str(name)]
    try:
        check_folder(folder.resolve())
        stack = lab_stack.up()
        results = run_drills(names, folder, stack, seed=seed, on_status=lambda s: console.log(s))
    except GradingError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in results], indent=2, default=str))
    else:
        render(results, console)
    if not all(r.passed for r in results):
        raise SystemExit(1)
