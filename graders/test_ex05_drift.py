"""Exercise 05 — data and model drift: the checks, their points and the mutants.

Verdicts come from held-out data and from the backends. ``detect_drift`` and
``check_data_quality`` run (in a child process, from the graded folder) on datasets drawn from
seeds the notebook never sees, with known answers (:func:`graders.ex05_worker.quality_cases` for
data quality). The live checks find the student's gateway among Prometheus's targets of job
``ml-drift``, drive a clean, a covariate-drift, a concept-drift and a feature-pipeline-failure run
at it with their delayed labels, run the student's ``drift_job.run_once`` after each, and read
what Prometheus (through the Pushgateway), Alertmanager and the notification sink recorded — with the student's own ``alertmanager.yml`` and
a copy of ``alert_rules.yml`` whose ``for:`` is shortened to 0 s. The rules' decision logic is
also unit-tested with ``promtool test rules``.

Run one submission: ``pytest graders/test_ex05_drift.py --notebook PATH`` or ``make grade EX=05``.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from graders.context import GradingContext, owned_targets, wait_until
from graders.errors import CheckFailed
from graders.ex05_checks import QUALITY_FIELDS, REQUIRED_FIELDS, Worker
from graders.registry import Exercise
from lab_stack import promtool
from lab_stack.clients import PushgatewayClient
from lab_stack.errors import LabError
from ml_service.data import FEATURES
from ml_service.traffic import GroundTruth, Scenario, run_traffic

__all__ = [
    "DRIFT_SHIFTS",
    "EXERCISE",
    "JOB",
    "JOB_NAME",
    "PIPELINE_ISSUES",
    "PIPELINE_NULL",
    "RECEIVER",
    "Ex05State",
]

#: The scrape job of the student's gateway.
JOB = "ml-drift"
#: The Pushgateway job of the drift job.
JOB_NAME = "ml_drift_job"
#: The retraining webhook receiver.
RECEIVER = "retrain"
#: Hidden seed of the held-out datasets (never in the notebook).
HELD_OUT_SEED = 50_517
PUBLIC_SEED = 0
#: The grader's covariate-drift run: five of nine features shift, ``hour`` does not.
DRIFT_SHIFTS = {
    "amount": "large",
    "merchant_category": "large",
    "channel": "large",
    "distance_from_home_km": "large",
    "device_age_days": "large",
}
#: The grader's feature-pipeline-failure run (the whole run inside the failure): what arrives null,
#: and the data-quality issues the job must push for it.
PIPELINE_NULL = ("avg_amount_30d",)
PIPELINE_CONSTANT = {"txn_count_24h": 0.0}
PIPELINE_ISSUES = frozenset({("avg_amount_30d", "missing"), ("txn_count_24h", "constant")})
QUALITY_ALERT = "DataQualityIncident"
ALERTS = ("DataDriftDetected", "ModelAccuracyDropped", QUALITY_ALERT)
#: Label the grader adds to its copy of the student's alert rules, one value per grade: this
#: grade's alerts are new to Alertmanager (its notification log would otherwise hold back a
#: repeat of an earlier grade's identical alert for the student's repeat_interval), and alerts
#: or notifications left over from an earlier grade are not counted.
RUN_LABEL = "ex05_grade"
_RATE, _REQUESTS = 200.0, 500
_CHI = ("chi", "χ")


def _fail(expected: str, found: str, hint: str) -> CheckFailed:
    return CheckFailed(expected=expected, found=found, hint=hint)


@dataclass
class Phase:
    """One grader run: traffic, the job's answer, and what the backends showed afterwards."""

    name: str
    truth: GroundTruth
    job: dict[str, Any]
    pushed_after: float
    metrics: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)
    firing: set[str] = field(default_factory=set)
    in_alertmanager: dict[str, dict[str, str]] = field(default_factory=dict)
    annotations: dict[str, dict[str, str]] = field(default_factory=dict)
    notified: dict[str, dict[str, str]] = field(default_factory=dict)
    receivers: dict[str, str] = field(default_factory=dict)
    streaming_psi: dict[str, float] = field(default_factory=dict)
    observe: Callable[[], bool] = field(default=lambda: False, repr=False)

    def values(self, name: str) -> dict[str, float]:
        """``feature`` → value of metric ``name`` (the last when several series share it)."""
        return {labels.get("feature", ""): v for labels, v in self.metrics.get(name, [])}

    def quality_issues(self) -> set[tuple[str, str]]:
        """``(feature, kind)`` of every ``ml_data_quality_issue`` series at 1."""
        return {
            (labels.get("feature", ""), labels.get("kind", ""))
            for labels, v in self.metrics.get("ml_data_quality_issue", [])
            if v == 1
        }

    def incident(self) -> list[float]:
        """The values of ``ml_data_quality_incident`` (one, when the job pushed it)."""
        return [v for _, v in self.metrics.get("ml_data_quality_incident", [])]


@dataclass
class Live:
    """The three runs, the Pushgateway groups left behind and any setup error."""

    phases: dict[str, Phase] = field(default_factory=dict)
    groups: int = 0
    setup_error: str | None = None
    empty_window: dict[str, Any] = field(default_factory=dict)


class Ex05State:
    """What the checks look at, computed lazily and once."""

    def __init__(self, ctx: GradingContext) -> None:
        self.ctx = ctx
        self.stack = ctx.stack
        self.prom = ctx.stack.prometheus
        self.worker = Worker(ctx.workdir)  # one child for every detect_drift and run_once call
        self.run_id = str(time.time_ns())
        weakref.finalize(self, self.worker.close)

    # --- held-out decisions --------------------------------------------------------------------
    def _detect(self, seed: int) -> dict[str, Any]:
        key = f"detect-{seed}"
        if key not in self.ctx.cache:
            self.ctx.cache[key] = self.worker.call("detect", seed, timeout=120.0)
        found: dict[str, Any] = self.ctx.cache[key]
        if not found["ok"]:
            raise _fail(
                "drift.py's detect_drift(reference, current) to run on held-out datasets",
                f"it failed: {found['error']}",
                "run the Task 1 cells; detect_drift must handle NaN/None and unseen categories.",
            )
        return found

    @property
    def public(self) -> dict[str, Any]:
        """``detect_drift`` on the notebook's own seed."""
        return self._detect(PUBLIC_SEED)

    @property
    def held_out(self) -> dict[str, Any]:
        """``detect_drift`` on the hidden seed."""
        return self._detect(HELD_OUT_SEED)

    def _quality(self, seed: int) -> dict[str, Any]:
        key = f"quality-{seed}"
        if key not in self.ctx.cache:
            self.ctx.cache[key] = self.worker.call("quality", seed, timeout=120.0)
        found: dict[str, Any] = self.ctx.cache[key]
        if not found["ok"]:
            raise _fail(
                "drift.py's check_data_quality(reference, current) to run on the grader's "
                "data-quality cases",
                f"it failed: {found['error']}",
                "run the Task 1b cell after the Task 1 cell; check_data_quality must handle "
                "NaN/None and a column that is missing on every row.",
            )
        some = found["cases"]["clean"]["features"][FEATURES[0]]
        lacking = [k for k in QUALITY_FIELDS if some.get(k) is None]
        if lacking:
            raise _fail(
                f"per-feature data-quality fields {QUALITY_FIELDS} (issues: a list of kinds)",
                f"missing {lacking}",
                "return a FeatureQuality per feature in QualityResult.features.",
            )
        return found

    @property
    def public_quality(self) -> dict[str, Any]:
        """``check_data_quality`` on the data-quality cases of the public seed."""
        return self._quality(PUBLIC_SEED)

    @property
    def held_out_quality(self) -> dict[str, Any]:
        """``check_data_quality`` on the data-quality cases of the hidden seed."""
        return self._quality(HELD_OUT_SEED)

    # --- the live runs -------------------------------------------------------------------------
    @cached_property
    def _gateway(self) -> str | None:
        """The base URL of the kernel's UP gateway of job ml-drift (None: there is none)."""
        found: list[str] = []

        def ready() -> bool:
            mine, _ = owned_targets(self.stack, JOB, self.ctx.kernel_pid)
            found[:] = [
                f"{urlsplit(t.scrape_url).scheme}://{urlsplit(t.scrape_url).netloc}"
                for t in mine
                if t.up
            ]
            return bool(found)

        wait_until(ready, timeout=8.0)  # once: every live check asks, a missing gateway costs 8 s
        return found[0] if found else None

    @property
    def gateway_url(self) -> str:
        """The base URL of the kernel's UP gateway of job ml-drift."""
        if self._gateway is None:
            raise _fail(
                f"your gateway registered with Prometheus under job {JOB!r} and UP",
                "no UP target of that job served by the notebook's kernel",
                f"run the Task 4 cell: start_services(...) then register(stack, {JOB!r}, url).",
            )
        return self._gateway

    def _query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        return [(dict(s.metric), s.value) for s in self.prom.query_samples(expr)]

    def _delete_groups(self, pgw: PushgatewayClient) -> int:
        groups = [g for g in pgw.metrics() if g.job == JOB_NAME]
        for g in groups:
            pgw.delete_group(JOB_NAME, {k: v for k, v in g.labels.items() if k != "job"})
        return len(groups)

    def _apply_alerting(self, tmp: Path) -> None:
        rules_src = self.ctx.workdir / "alert_rules.yml"
        am_src = self.ctx.workdir / "alertmanager.yml"
        for path in (rules_src, am_src):
            if not path.is_file():
                raise _fail(
                    f"{path.name} next to the notebook",
                    "no such file",
                    "run the Task 5 cells that write alert_rules.yml and alertmanager.yml.",
                )
        doc = yaml.safe_load(rules_src.read_text()) or {}
        for group in doc.get("groups") or []:
            group["name"] = f"ex05-grader-{group.get('name', 'rules')}"
            for rule in group.get("rules") or []:
                if "alert" in rule:
                    rule["for"] = "0s"
                    rule["labels"] = {**(rule.get("labels") or {}), RUN_LABEL: self.run_id}
        shortened = tmp / "ex05_grader_rules.yml"
        shortened.write_text(yaml.safe_dump(doc))
        self.stack.apply_rules([shortened])
        self.stack.apply_alertmanager_config(am_src)

    def _deliver_labels(self, truth: GroundTruth) -> None:
        with (self.ctx.workdir / "labels.jsonl").open("a") as fh:
            for row in truth.labels():
                fh.write(
                    json.dumps({"request_id": row["request_id"], "label": row["label"]}) + "\n"
                )

    def ours(self, labels: dict[str, str]) -> bool:
        """True for an alert of this grade's rules."""
        return labels.get(RUN_LABEL) == self.run_id

    def _run_job(self, *, window_s: float, now: float) -> dict[str, Any]:
        return self.worker.call("job", self.stack.url("pushgateway"), window_s, now, timeout=60.0)

    def _phase(
        self,
        name: str,
        scenario: Scenario,
        seed: int,
        wait_for: str | None,
        settle: Phase | None = None,
    ) -> Phase:
        """Traffic, labels, one job run, then what the backends show.

        ``settle`` is the previous run when it waited for nothing (the clean run): its alerts get
        this run's traffic time to show up and are read again before this run's job pushes.
        """
        t0 = time.time()
        truth = run_traffic(
            self.gateway_url,
            scenario=scenario,
            rate=_RATE,
            requests=_REQUESTS,
            seed=seed,
            concurrency=8,
            timeout_s=15.0,
        )
        traffic_end = time.time()
        if settle is not None:
            settle.observe()
        self._deliver_labels(truth)
        now = time.time() + 0.05
        started = time.time()
        job = self._run_job(window_s=now - t0 + 0.5, now=now)
        phase = Phase(name, truth, job, started)
        if not job["ok"]:
            return phase
        host = urlsplit(self.gateway_url).netloc
        ts = f'max(ml_drift_job_last_success_timestamp_seconds{{job="{JOB_NAME}"}})'
        # the gateway scraped after the last request: its streaming PSI covers the whole run
        scraped = f'max(timestamp(ml_streaming_window_requests{{instance="{host}"}}))'
        wait_until(lambda: (self.prom.query_value(ts) or 0.0) >= started - 1.0, timeout=8.0)
        wait_until(lambda: (self.prom.query_value(scraped) or 0.0) >= traffic_end, timeout=4.0)
        for metric in (
            "ml_feature_drifted",
            "ml_dataset_drift",
            "ml_feature_drift_score",
            "ml_feature_drift_p_value",
            "ml_model_accuracy",
            "ml_drift_job_last_success_timestamp_seconds",
            "ml_feature_missing_share",
            "ml_data_quality_issue",
            "ml_data_quality_incident",
        ):
            phase.metrics[metric] = self._query(f'{metric}{{job="{JOB_NAME}"}}')
        phase.streaming_psi = {
            labels.get("feature", ""): v
            for labels, v in self._query(f'ml_streaming_feature_psi{{instance="{host}"}}')
        }
        alert_expr = (
            f'ALERTS{{alertstate="firing", {RUN_LABEL}="{self.run_id}", '
            f'alertname=~"{"|".join(ALERTS)}"}}'
        )

        def observe() -> bool:
            phase.firing = {lab["alertname"] for lab, _ in self._query(alert_expr)}
            with self.stack.alertmanager as am:
                for alert in am.alerts(active=True):
                    labels = alert.get("labels", {})
                    if labels.get("alertname") in ALERTS and self.ours(labels):
                        phase.in_alertmanager[labels["alertname"]] = labels
                        phase.annotations[labels["alertname"]] = alert.get("annotations", {})
            for note in self.stack.sinks.notifications(since=t0):
                if note.status == "firing":
                    for alert in note.alerts:
                        labels = alert.get("labels", {})
                        if self.ours(labels):
                            name = str(labels.get("alertname"))
                            phase.receivers.setdefault(name, note.receiver)
                            if note.receiver == RECEIVER:
                                phase.notified.setdefault(name, labels)
            if wait_for is None:
                return False
            # a retraining alert is waited for at the retrain webhook, the others anywhere
            seen = phase.notified if wait_for != QUALITY_ALERT else phase.receivers
            return wait_for in phase.firing and wait_for in seen

        phase.observe = observe
        if wait_for is None:
            observe()  # and again by the next run, after its traffic (see settle)
        else:
            wait_until(observe, timeout=15.0, interval=0.5)
        return phase

    @cached_property
    def live(self) -> Live:
        """Clean, covariate-drift and concept-drift runs with the student's job and alerting."""
        live = Live()
        gateway = self.gateway_url
        pgw = PushgatewayClient(self.stack.url("pushgateway"))
        self._delete_groups(pgw)
        # the deleted groups' series (the notebook's own runs pushed drift) leave Prometheus
        # before the grader's rules can see them
        wait_until(lambda: not self._query(f'{{job="{JOB_NAME}"}}'), timeout=5.0)
        (self.ctx.workdir / "labels.jsonl").touch()
        with tempfile.TemporaryDirectory(prefix="ex05-") as tmp:
            try:
                self._apply_alerting(Path(tmp))
            except LabError as exc:
                live.setup_error = f"the stack refused your alerting files: {exc}"
            try:
                clean = Scenario.named("steady")
                drift = Scenario.named("covariate_drift", start=0.0, end=1.0, shifts=DRIFT_SHIFTS)
                concept = Scenario.named("concept_drift", start=0.0, end=1.0)
                quiet = self._phase("clean", clean, HELD_OUT_SEED + 1, None)
                live.phases["clean"] = quiet
                live.phases["drift"] = self._phase(
                    "drift", drift, HELD_OUT_SEED + 2, "DataDriftDetected", settle=quiet
                )
                live.phases["concept"] = self._phase(
                    "concept", concept, HELD_OUT_SEED + 3, "ModelAccuracyDropped"
                )
                pipeline = Scenario.named(
                    "feature_pipeline_failure",
                    start=0.0,
                    end=1.0,
                    null_features=PIPELINE_NULL,
                    constant_features=PIPELINE_CONSTANT,
                )
                live.phases["pipeline"] = self._phase(
                    "pipeline", pipeline, HELD_OUT_SEED + 4, QUALITY_ALERT
                )
                live.groups = len([g for g in pgw.metrics() if g.job == JOB_NAME])
                live.empty_window = self._run_job(window_s=60.0, now=time.time() - 7 * 24 * 3600)
            finally:
                self.stack.remove_rules(["ex05_grader_rules"])
                self.stack.reset_config("alertmanager")
                self._delete_groups(pgw)
                if all(
                    f"{kind}-{seed}" in self.ctx.cache
                    for kind in ("detect", "quality")
                    for seed in (PUBLIC_SEED, HELD_OUT_SEED)
                ):
                    self.worker.close()  # nothing left for it (a later call would restart it)
        del gateway
        return live

    def phase(self, name: str) -> Phase:
        """A live phase whose job run succeeded, or a failure that says why not."""
        live = self.live
        found = live.phases.get(name)
        if found is None:
            raise _fail(f"the {name} run", "it did not happen", "see the first failed check.")
        if not found.job["ok"]:
            raise _fail(
                f"drift_job.run_once to succeed after the grader's {name} run",
                f"it raised: {found.job['error']}",
                "run the Task 3 cells; the job reads predictions.jsonl, labels.jsonl and reference.pkl.",
            )
        return found

    def require_alerting(self) -> None:
        """Fail when the alerting files could not be applied."""
        if self.live.setup_error:
            raise _fail(
                "alert_rules.yml and alertmanager.yml accepted by promtool/amtool",
                self.live.setup_error,
                "run the Task 5 cells and fix what the checker reports.",
            )


EXERCISE = Exercise(
    number="05",
    folder="ex05_drift",
    notebook="ex05_drift.ipynb",
    title="Data and model drift",
    state=Ex05State,
    cell_timeout=180.0,
    total_timeout=360.0,
)


def _decision_problems(data: dict[str, Any]) -> list[str]:
    problems = []
    for name, ds in data["datasets"].items():
        missed = sorted(set(ds["truth"]) - set(ds["flagged"]))
        extra = sorted(set(ds["flagged"]) - set(ds["truth"]))
        if missed:
            problems.append(f"{name}: missed {missed}")
        if extra:
            problems.append(f"{name}: false alarm on {extra}")
        if ds["dataset_drift"] != ds["truth_dataset"]:
            problems.append(
                f"{name}: dataset_drift={ds['dataset_drift']}, truth {ds['truth_dataset']}"
            )
    return problems


@EXERCISE.check(points=2, title="detect_drift gets the notebook's hard cases right")
def test_public_decisions(state: Ex05State) -> None:
    """Every drifted feature flagged, nothing else, and the dataset decision right (seed 0)."""
    data = state.public
    some = next(iter(data["datasets"].values()))
    missing = [k for k in REQUIRED_FIELDS if some["features"][FEATURES[0]].get(k) is None]
    if missing:
        raise _fail(
            f"per-feature fields {REQUIRED_FIELDS}",
            f"missing {missing}",
            "return them per feature.",
        )
    problems = _decision_problems(data)
    if problems:
        raise _fail(
            "decisions equal to the known answers",
            "; ".join(problems),
            "pair the p-value with an effect size; drop missing values before testing.",
        )


@EXERCISE.check(points=2, title="A negligible shift on a huge sample is not flagged")
def test_huge_sample(state: Ex05State) -> None:
    """On 50 000 rows a 0.02-sd shift is significant (p down to 1e-12) but must not count as drift."""
    ds = state.public["datasets"]["negligible_large_sample"]
    if ds["flagged"]:
        pvals = {f: ds["features"][f]["p_value"] for f in ds["flagged"]}
        raise _fail(
            "no feature flagged on negligible_large_sample",
            f"flagged {ds['flagged']} (p-values {pvals})",
            "a p-value says 'not chance', not 'large': require effect_size >= 0.1 as well.",
        )


@EXERCISE.check(points=2, title="Categorical features use an order-free test (chi-squared)")
def test_categorical_test(state: Ex05State) -> None:
    """Categorical features are tested with chi-squared, and renaming categories changes nothing."""
    data = state.public
    ds = data["datasets"]["mixed"]
    tests = {f: str(ds["features"][f]["test"]) for f in data["categorical"]}
    wrong = {f: t for f, t in tests.items() if not any(c in t.lower() for c in _CHI)}
    before, after = data["renaming"]["before"], data["renaming"]["after"]
    same = (
        before is not None
        and after is not None
        and math.isclose(before, after, rel_tol=1e-6, abs_tol=1e-12)
    )
    if wrong or not same:
        raise _fail(
            "chi-squared on category counts for " + ", ".join(tests),
            f"tests {tests}; p-value {before} before and {after} after renaming the categories",
            "KS needs an order and categories have none: use scipy.stats.chi2_contingency.",
        )


@EXERCISE.check(
    points=4, title="Held-out datasets: right features, right dataset decision", hidden=True
)
def test_held_out_decisions(state: Ex05State) -> None:
    """On unseen seeds: new categories and shifts flagged, missing values and negligible shifts not."""
    problems = _decision_problems(state.held_out)
    if problems:
        raise _fail(
            "decisions equal to the known answers on held-out data",
            "; ".join(problems),
            "test your detector on other seeds of ml_service.drift_data.",
        )


@EXERCISE.check(points=2, title="The Evidently report and its per-column JSON")
def test_evidently_report(state: Ex05State) -> None:
    """drift_report.html is an Evidently report and drift_report.json has a result for every column."""
    html, raw = state.ctx.workdir / "drift_report.html", state.ctx.workdir / "drift_report.json"
    text = html.read_text(errors="ignore") if html.is_file() else ""
    if len(text) < 100_000 or "root_metric_" not in text or "drift" not in text.lower():
        raise _fail(
            "drift_report.html written by snapshot.save_html",
            "no such report"
            if not html.is_file()
            else f"{len(text)} characters without an Evidently drift report",
            "run the Task 2 cell.",
        )
    try:
        data = json.loads(raw.read_text())
    except (OSError, ValueError) as exc:
        raise _fail(
            "drift_report.json (snapshot.json())",
            f"unreadable: {type(exc).__name__}",
            "write Path('drift_report.json').write_text(snapshot.json()).",
        ) from None
    columns = {
        m.get("config", {}).get("column")
        for m in data.get("metrics", [])
        if str(m.get("config", {}).get("type", "")).endswith("ValueDrift")
    }
    missing = sorted(set(FEATURES) - columns)
    if missing:
        raise _fail(
            "a ValueDrift result for every feature",
            f"none for {missing}",
            "run DataDriftPreset() on the full frames of cases['mixed'].",
        )


@EXERCISE.check(points=3, title="Drift metrics reach Prometheus through the Pushgateway")
def test_drift_metrics(state: Ex05State) -> None:
    """After the drift run: per-feature scores with method labels, exactly the shifted features drifted, dataset drift 1."""
    phase = state.phase("drift")
    drifted = phase.values("ml_feature_drifted")
    want = {f: float(f in DRIFT_SHIFTS) for f in FEATURES}
    methods = {lab.get("method") for lab, _ in phase.metrics["ml_feature_drift_score"]}
    scored = {lab.get("feature") for lab, _ in phase.metrics["ml_feature_drift_score"]}
    dataset = [v for _, v in phase.metrics["ml_dataset_drift"]]
    if drifted != want or dataset != [1.0] or set(FEATURES) - scored or not methods - {None}:
        raise _fail(
            f'ml_feature_drifted{{job="{JOB_NAME}",feature}} = {want}, ml_dataset_drift = 1, '
            "ml_feature_drift_score{feature,method} for every feature",
            f"ml_feature_drifted {drifted}, ml_dataset_drift {dataset}, scores for {sorted(x for x in scored if x)} "
            f"with methods {sorted(x for x in methods if x)}",
            f"push with push_to_gateway(url, job={JOB_NAME!r}, grouping_key=...) after every run.",
        )


@EXERCISE.check(points=1, title="The job's last-success timestamp is fresh")
def test_timestamp_fresh(state: Ex05State) -> None:
    """ml_drift_job_last_success_timestamp_seconds is the time of the grader's last run."""
    phase = state.phase("concept")
    stamps = [v for _, v in phase.metrics["ml_drift_job_last_success_timestamp_seconds"]]
    if not stamps or not (phase.pushed_after - 2.0 <= max(stamps) <= phase.pushed_after + 30.0):
        raise _fail(
            f"a timestamp within seconds of {phase.pushed_after:.0f}",
            f"{stamps}",
            "set the gauge to time.time() when the run succeeds, and push it with the rest.",
        )


@EXERCISE.check(
    points=2, title="One stable Pushgateway group: runs replace each other", hidden=True
)
def test_stable_grouping_key(state: Ex05State) -> None:
    """Three runs of the job leave exactly one group in the Pushgateway (no stale series)."""
    groups = state.live.groups
    if groups != 1:
        raise _fail(
            f"one group of job {JOB_NAME!r} after three runs",
            f"{groups} groups",
            "use a grouping key that is the same on every run (no run id, no timestamp).",
        )


@EXERCISE.check(points=1, title="An empty window fails loudly", hidden=True)
def test_empty_window(state: Ex05State) -> None:
    """run_once on a window with no predictions raises instead of reporting 'no drift'."""
    result = state.live.empty_window
    if result.get("ok", True):
        raise _fail(
            "run_once to raise on a window with no predictions",
            f"it returned {result}",
            "raise ValueError when the window is empty or lacks the model's inputs.",
        )


@EXERCISE.check(points=3, title="DataDriftDetected fires and the retrain request reaches the sink")
def test_drift_alert(state: Ex05State) -> None:
    """After the drift run the alert fires in Prometheus and Alertmanager and the retrain webhook gets it."""
    state.require_alerting()
    phase = state.phase("drift")
    name = "DataDriftDetected"
    labels = phase.notified.get(name) or phase.in_alertmanager.get(name) or {}
    if (
        name not in phase.firing
        or name not in phase.in_alertmanager
        or name not in phase.notified
        or labels.get("retrain") != "true"
    ):
        raise _fail(
            f'{name} firing, in Alertmanager, and notified to receiver {RECEIVER!r} with retrain="true"',
            f"firing {sorted(phase.firing)}, in Alertmanager {sorted(phase.in_alertmanager)}, "
            f"at {RECEIVER!r} {sorted(phase.notified)}, labels {labels}",
            'alert on ml_dataset_drift == 1 with labels retrain: "true"; route retrain="true" to the retrain webhook.',
        )


@EXERCISE.check(points=2, title="A clean run fires nothing", hidden=True)
def test_clean_is_quiet(state: Ex05State) -> None:
    """After steady traffic no drift or accuracy alert fires and no retrain request is sent."""
    state.require_alerting()
    phase = state.phase("clean")
    flagged = sorted(f for f, v in phase.values("ml_feature_drifted").items() if v)
    if phase.firing or phase.notified or flagged:
        raise _fail(
            "no alert and no drifted feature on clean traffic",
            f"flagged {flagged}, firing {sorted(phase.firing)}, notified {sorted(phase.notified)}",
            "decide on p-value AND effect size, and alert on the decision.",
        )


@EXERCISE.check(points=2, title="Rules alert on the decision, not on a raw p-value")
def test_alert_on_decision(state: Ex05State) -> None:
    """promtool: significant p-values with a 'no drift' decision never fire DataDriftDetected."""
    path = state.ctx.workdir / "alert_rules.yml"
    if not path.is_file():
        raise _fail("alert_rules.yml", "no such file", "run the Task 5 cell.")
    base = f'job="{JOB_NAME}", instance="fraud-model"'
    series = [
        {"series": f"ml_dataset_drift{{{base}}}", "values": "0x90"},
        {"series": f"ml_model_accuracy{{{base}}}", "values": "0.87x90"},
    ]
    for f in FEATURES:
        series += [
            {"series": f'ml_feature_drifted{{{base}, feature="{f}"}}', "values": "0x90"},
            {
                "series": f'ml_feature_drift_p_value{{{base}, feature="{f}", test="ks"}}',
                "values": "0.000001x90",
            },
            {
                "series": f'ml_feature_drift_score{{{base}, feature="{f}", method="psi"}}',
                "values": "0.01x90",
            },
        ]
    tests = {
        "rule_files": [str(path)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {"eval_time": "90m", "alertname": "DataDriftDetected", "exp_alerts": []}
                ],
            }
        ],
    }
    with tempfile.TemporaryDirectory(prefix="ex05-promtool-") as tmp:
        test_file = Path(tmp) / "decision_test.yml"
        test_file.write_text(yaml.safe_dump(tests))
        result = promtool.test_rules([test_file])
    if not result.ok:
        raise _fail(
            "DataDriftDetected silent while ml_dataset_drift is 0 and p-values are 1e-6",
            result.output.strip()[-600:],
            "alert on ml_dataset_drift (the decision), not on a p-value.",
        )


@EXERCISE.check(
    points=3,
    title="Concept drift: accuracy drops as much as the generator made it, and the alert fires",
)
def test_accuracy_drop(state: Ex05State) -> None:
    """The pushed accuracy matches the labels before and after, and ModelAccuracyDropped reaches the retrain sink."""
    state.require_alerting()
    clean, concept = state.phase("clean"), state.phase("concept")
    got = {p.name: [v for _, v in p.metrics["ml_model_accuracy"]] for p in (clean, concept)}
    want = {p.name: p.truth.accuracy() for p in (clean, concept)}
    ok = all(len(got[k]) == 1 and abs(got[k][0] - want[k]) <= 0.02 for k in want)
    name = "ModelAccuracyDropped"
    fired = name in concept.firing and name in concept.notified
    if not ok or not fired:
        raise _fail(
            f"ml_model_accuracy {want['clean']:.3f} after the clean run and {want['concept']:.3f} after the "
            f"concept-drift run (a drop of {want['clean'] - want['concept']:.3f}), and {name} at {RECEIVER!r}",
            f"accuracy {got}, firing {sorted(concept.firing)}, at {RECEIVER!r} {sorted(concept.notified)}",
            "join the window's predictions with labels.jsonl by request_id; alert when accuracy < 0.75.",
        )


@EXERCISE.check(points=1, title="The service's streaming PSI sees the drift run")
def test_streaming_monitor(state: Ex05State) -> None:
    """ml_streaming_feature_psi from the gateway is large for the shifted features and small for hour."""
    psi = state.phase("drift").streaming_psi
    low = {f: v for f, v in psi.items() if f in DRIFT_SHIFTS and not v >= 0.2}
    if not psi or low or not psi.get("hour", 1.0) < 0.2:
        raise _fail(
            "ml_streaming_feature_psi >= 0.2 for the shifted features, < 0.2 for hour",
            f"{psi or 'no series'}",
            "build DriftMonitor.from_reference(reference, registry=registry), feed it from on_prediction, "
            "and serve that registry at /metrics.",
        )


# --- data quality: missing, constant and out-of-range features beside the drift tests -------------
_QUALITY_HINT = (
    "compare each feature with the reference: missing share above the reference's by more than "
    "MISSING_MARGIN; one distinct observed value where the reference had several; more than "
    "OUT_OF_RANGE_MAX of the observed values outside the reference's [min, max]. The reference's "
    "own missing share, and a drift, are not data-quality issues."
)


def _quality_problems(data: dict[str, Any]) -> list[str]:
    problems = []
    for name, case in data["cases"].items():
        found = {f: row["issues"] for f, row in case["features"].items() if row["issues"]}
        want = case["truth"]
        for f in sorted(set(found) | set(want)):
            if sorted(found.get(f) or []) != sorted(want.get(f, [])):
                problems.append(
                    f"{name}: {f} flagged {found.get(f) or []}, known {want.get(f, [])}"
                )
        if case["incident"] != case["truth_incident"]:
            problems.append(f"{name}: incident={case['incident']}, known {case['truth_incident']}")
        if case["drift_error"]:
            problems.append(f"{name}: detect_drift raised {case['drift_error']}")
    return problems


def _quality_hint(problems: list[str]) -> str:
    if any("detect_drift raised" in p for p in problems):
        return (
            "a column with no values on one side cannot be tested: return NaN statistic, p-value "
            "and effect size with drifted=False (data quality reports it); and " + _QUALITY_HINT
        )
    return _QUALITY_HINT


@EXERCISE.check(points=2, title="Missing shares are missing rows over all rows of the window")
def test_missing_share_values(state: Ex05State) -> None:
    """On every data-quality case the reported missing shares (reference and current) equal the known shares."""
    data = state.public_quality
    wrong = []
    for name, case in data["cases"].items():
        for f, known in case["shares"].items():
            row = case["features"][f]
            got = (row["missing_reference"], row["missing_current"])
            if any(
                g is None or not math.isclose(g, k, abs_tol=1e-6)
                for g, k in zip(got, known, strict=True)
            ):
                wrong.append(f"{name}/{f}: {got}, known ({known[0]:.4f}, {known[1]:.4f})")
    if wrong:
        more = f" and {len(wrong) - 3} more" if len(wrong) > 3 else ""
        raise _fail(
            "missing_reference / missing_current = the rows where the feature is missing "
            "divided by all rows of that frame",
            "; ".join(wrong[:3]) + more,
            "frame.isna().mean() per column: divide by len(frame), not by the rows that have a "
            "value (notna().sum()) nor by every cell of the frame (frame.size).",
        )


@EXERCISE.check(
    points=2, title="A feature arriving null for 30% of requests is a data-quality incident"
)
def test_pipeline_failure_flagged(state: Ex05State) -> None:
    """null_30: avg_amount_30d null on 30% of rows, its values unchanged: flagged missing, an incident."""
    case = state.public_quality["cases"]["null_30"]
    row = case["features"]["avg_amount_30d"]
    if "missing" not in (row["issues"] or []) or not case["incident"]:
        raise _fail(
            "avg_amount_30d flagged 'missing' and incident=True on a window where it is null on "
            "30% of rows (reference: 0%)",
            f"issues {row['issues']}, missing share {row['missing_current']} "
            f"(reference {row['missing_reference']}), incident {case['incident']}; "
            f"detect_drift flagged {case['drifted']} (rightly not avg_amount_30d: the values "
            "that arrive are unchanged)",
            "the drift tests drop missing values, so the data-quality check must count them: "
            "missing share of the window minus the reference's, over MISSING_MARGIN, is an issue.",
        )


@EXERCISE.check(
    points=2, title="Data-quality flags equal the known answers: constant, out of range, clean"
)
def test_quality_decisions(state: Ex05State) -> None:
    """On the public seed's cases: exactly the broken features flagged, with the right kinds."""
    problems = _quality_problems(state.public_quality)
    if problems:
        raise _fail(
            "data-quality issues equal to the known answers",
            "; ".join(problems),
            _quality_hint(problems),
        )


@EXERCISE.check(
    points=3,
    title="Held-out data-quality cases: right features, right kinds, no false alarm",
    hidden=True,
)
def test_quality_held_out(state: Ex05State) -> None:
    """On the hidden seed: pipeline failures flagged; clean, equal-missing and drifted windows not."""
    problems = _quality_problems(state.held_out_quality)
    if problems:
        raise _fail(
            "data-quality issues equal to the known answers on held-out windows",
            "; ".join(problems),
            _quality_hint(problems),
        )


@EXERCISE.check(
    points=2, title="Data-quality metrics reach Prometheus after a feature-pipeline failure"
)
def test_quality_metrics(state: Ex05State) -> None:
    """After the pipeline-failure run: missing shares per feature, the issues by feature and kind, incident 1."""
    phase = state.phase("pipeline")
    missing = phase.values("ml_feature_missing_share")
    want = {f: float(f in PIPELINE_NULL) for f in FEATURES}
    close = set(missing) >= set(FEATURES) and all(
        abs(missing[f] - want[f]) <= 0.02 for f in FEATURES
    )
    issues, incident = phase.quality_issues(), phase.incident()
    if not close or issues != PIPELINE_ISSUES or incident != [1.0]:
        raise _fail(
            f'ml_feature_missing_share{{job="{JOB_NAME}",feature}} = {want}, '
            f"ml_data_quality_issue == 1 for exactly {sorted(PIPELINE_ISSUES)}, "
            "ml_data_quality_incident = 1",
            f"missing shares {missing or 'none'}, issues at 1 {sorted(issues)}, "
            f"incident {incident}",
            "run check_data_quality in run_once and push its results with the drift metrics "
            "(a gauge per feature, per feature and kind, and the incident, 1 or 0).",
        )


@EXERCISE.check(
    points=2,
    title="DataQualityIncident fires: critical, with a runbook, to the on-call (not a retrain)",
)
def test_quality_alert(state: Ex05State) -> None:
    """After the pipeline-failure run the alert fires, carries severity and annotations, and is not routed to retrain."""
    state.require_alerting()
    phase = state.phase("pipeline")
    name = QUALITY_ALERT
    labels = phase.in_alertmanager.get(name, {})
    notes = phase.annotations.get(name, {})
    lacking = [a for a in ("summary", "description", "runbook_url") if not notes.get(a)]
    receiver = phase.receivers.get(name)
    if (
        name not in phase.firing
        or not labels
        or labels.get("severity") != "critical"
        or lacking
        or receiver is None
        or receiver == RECEIVER
    ):
        raise _fail(
            f"{name} firing, in Alertmanager with severity=critical and summary, description and "
            f"runbook_url annotations, notified to a receiver other than {RECEIVER!r}",
            f"firing {sorted(phase.firing)}, labels {labels or 'not in Alertmanager'}, "
            f"annotations lacking {lacking}, notified to {receiver!r}",
            f"alert on max by (job) (ml_data_quality_incident{{job={JOB_NAME!r}}}) == 1 with "
            "severity critical and no retrain label: a model retrained on a broken pipeline's "
            "output learns the bug.",
        )


@EXERCISE.check(
    points=1, title="Clean and drifted traffic raise no data-quality incident", hidden=True
)
def test_quality_clean_quiet(state: Ex05State) -> None:
    """After the clean, covariate-drift and concept-drift runs: incident 0, no issue, no DataQualityIncident."""
    state.require_alerting()
    problems = []
    for name in ("clean", "drift", "concept"):
        phase = state.phase(name)
        issues, incident = phase.quality_issues(), phase.incident()
        if incident != [0.0] or issues or QUALITY_ALERT in phase.firing:
            problems.append(
                f"{name}: incident {incident}, issues {sorted(issues)}, "
                f"{QUALITY_ALERT} {'firing' if QUALITY_ALERT in phase.firing else 'silent'}"
            )
    if problems:
        raise _fail(
            "ml_data_quality_incident = 0 with no issue and no alert on clean and drifted traffic",
            "; ".join(problems),
            "push the incident as 0 when nothing is flagged; a drift is not a data-quality "
            "issue (only a share above OUT_OF_RANGE_MAX outside the reference's range is).",
        )


# --- mutants: plausible wrong answers, each must fail the checks it aims at ------------------------
EXERCISE.mutant(
    "ks_on_categorical",
    description="KS on label-encoded categories instead of chi-squared",
    aims=["categorical_test"],
    replace={
        "    numeric = pd.api.types.is_numeric_dtype(reference) and not pd.api.types.is_bool_dtype(reference)\n"
        '    return "numeric" if numeric else "categorical"': '    return "numeric"  # every column through KS',
        '    return pd.to_numeric(series, errors="coerce").dropna().to_numpy(float)': "    s = series.dropna()\n"
        "    if not pd.api.types.is_numeric_dtype(s):  # label-encode categories\n"
        '        s = s.astype(str).map(lambda v: float(int.from_bytes(v.encode()[:6].ljust(6, b"\\0"), "big")))\n'
        "    return s.to_numpy(float)",
    },
)
EXERCISE.mutant(
    "p_value_only",
    description="decide on the p-value alone (false alarms on a huge sample)",
    aims=["huge_sample", "held_out_decisions"],
    replace={
        "bool(p < ALPHA and wasserstein >= WASSERSTEIN_MIN)": "bool(p < ALPHA)",
        "bool(p < ALPHA and size >= PSI_MIN)": "bool(p < ALPHA)",
    },
)
EXERCISE.mutant(
    "per_run_grouping_key",
    description="push with a grouping key that changes every run (stale series pile up)",
    aims=["stable_grouping_key"],
    replace={"grouping_key=GROUPING_KEY": 'grouping_key={"run_id": str(time.time_ns())}'},
)
EXERCISE.mutant(
    "alert_on_p_value",
    description="DataDriftDetected on the raw p-value instead of the dataset decision",
    aims=["alert_on_decision"],
    replace={
        'expr: max by (job) (ml_dataset_drift{job="ml_drift_job"}) == 1': 'expr: min by (job) (ml_feature_drift_p_value{job="ml_drift_job"}) < 0.05',
    },
)
EXERCISE.mutant(
    "missing_dropped_first",
    description="data quality on the frame with missing rows dropped (missing share ignored)",
    aims=["pipeline_failure_flagged", "quality_held_out"],
    replace={
        "    missing_reference = reference.isna().mean()  # per column: missing rows / all rows\n"
        "    missing_current = current.isna().mean()\n": "    missing_reference = reference.dropna().isna().mean()  # cleaned first, as for the tests\n"
        "    missing_current = current.dropna().isna().mean()\n",
    },
)
EXERCISE.mutant(
    "missing_over_present_rows",
    description="missing share divided by the rows that have a value, not by all rows",
    aims=["missing_share_values"],
    replace={
        "    missing_reference = reference.isna().mean()  # per column: missing rows / all rows\n"
        "    missing_current = current.isna().mean()\n": "    missing_reference = reference.isna().sum() / reference.notna().sum()\n"
        "    missing_current = current.isna().sum() / current.notna().sum()\n",
    },
)
EXERCISE.mutant(
    "missing_over_all_cells",
    description="missing share divided by every cell of the frame, not by the rows",
    aims=["missing_share_values", "pipeline_failure_flagged"],
    replace={
        "    missing_reference = reference.isna().mean()  # per column: missing rows / all rows\n"
        "    missing_current = current.isna().mean()\n": "    missing_reference = reference.isna().sum() / reference.size\n"
        "    missing_current = current.isna().sum() / current.size\n",
    },
)
EXERCISE.mutant(
    "quality_alert_retrains",
    description="DataQualityIncident routed to the retraining pipeline (retrain on broken data)",
    aims=["quality_alert"],
    replace={
        "        labels:\n          severity: critical\n        annotations:\n"
        '          summary: "Data-quality incident': "        labels:\n          severity: critical\n"
        '          retrain: "true"\n        annotations:\n'
        '          summary: "Data-quality incident',
    },
)
