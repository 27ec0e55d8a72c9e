"""Exercise 06 — alerting that fires when it should and only then: checks, points and mutants.

Verdicts come from promtool and amtool (the files), Alertmanager (inhibition) and, live, from
Prometheus's alerts and the notification sinks while the grader's own gateways run the latency,
error, GPU-leak and steady scenarios against a time-compressed copy of the student's rules
(see :mod:`graders.ex06_checks`).

Run one submission: ``pytest graders/test_ex06_alerting.py --notebook PATH`` or ``make grade EX=06``.
"""

from __future__ import annotations

import json
import re
from functools import cached_property
from pathlib import Path
from typing import Any

from graders import ex06_checks as ex
from graders.context import GradingContext
from graders.errors import CheckFailed, GradingError
from graders.registry import Exercise
from lab_stack import promtool

__all__ = ["DASHBOARD_SIGNALS", "EXERCISE", "Ex06State"]

#: What the infrastructure dashboard must show: signal -> metric name pattern in some query.
DASHBOARD_SIGNALS = {
    "CPU": r"node_cpu_seconds_total",
    "memory": r"node_memory_",
    "disk I/O": r"node_disk_(read|written)_bytes_total|node_disk_io_time",
    "network": r"node_network_(receive|transmit)_bytes_total",
    "GPU utilisation": r"DCGM_FI_DEV_GPU_UTIL",
    "GPU memory": r"DCGM_FI_DEV_FB_(USED|FREE)",
}


def _fail(expected: str, found: str, hint: str) -> CheckFailed:
    return CheckFailed(expected=expected, found=found, hint=hint)


class Ex06State:
    """The submission's files and, computed once and lazily, what the tools and the live run saw."""

    def __init__(self, ctx: GradingContext) -> None:
        self.ctx = ctx
        self.folder = Path(ctx.workdir)
        self.rules_path = self.folder / "alert_rules.yml"
        self.tests_path = self.folder / "rule_tests.yml"
        self.am_path = self.folder / "alertmanager.yml"

    @cached_property
    def rules(self) -> dict[str, dict[str, Any]]:
        """The student's alerting rules by name (a failure when the file cannot be read)."""
        try:
            return ex.alert_rules(self.rules_path)
        except GradingError as exc:
            raise _fail(
                "alert_rules.yml with groups of rules",
                str(exc).split(" Hint:")[0],
                "run the notebook's promtool cell and fix what it names.",
            ) from None

    def require_rules(self) -> dict[str, dict[str, Any]]:
        """The rules, or a failure naming the required alerts that are missing."""
        missing = [a for a in ex.REQUIRED_ALERTS if a not in self.rules]
        if missing:
            raise _fail(
                f"the {len(ex.REQUIRED_ALERTS)} alerts of the task table",
                f"missing: {', '.join(missing)}",
                "name each alert exactly as in the table (alert: HighPredictionLatency, ...).",
            )
        return self.rules

    @cached_property
    def rendered_am(self) -> Path:
        """The student's alertmanager.yml with the sinks' addresses filled in (amtool-checked)."""
        if not self.am_path.is_file():
            raise _fail(
                "alertmanager.yml in the exercise folder", "no file", "write alertmanager.yml."
            )
        text = self.am_path.read_text()
        absent = [p for p in ex.PLACEHOLDERS if p not in text]
        path = self.folder / "alertmanager.rendered.yml"
        path.write_text(ex.render_alertmanager_config(text, ex.sink_addresses(self.ctx.stack)))
        result = promtool.check_alertmanager_config(path, raise_on_error=False)
        if not result.ok:
            raise _fail(
                "amtool check-config to accept the rendered alertmanager.yml",
                result.output[-600:],
                "fix what amtool names (indentation, matchers, receiver names).",
            )
        if absent:
            raise _fail(
                "receivers that point at the lab's sinks through ${SINKS_URL} and ${SMTP_SMARTHOST}",
                f"no {', '.join(absent)} in alertmanager.yml",
                "use url: ${SINKS_URL}/webhook/pager, api_url: ${SINKS_URL}/slack/slack-ml and "
                "smtp_smarthost: ${SMTP_SMARTHOST}.",
            )
        return path

    @cached_property
    def live(self) -> ex.LiveRun:
        """The live run over a time-compressed copy of the rules (about 20 s, once per grade)."""
        self.require_rules()
        self.rendered_am  # noqa: B018 - a broken config fails here with amtool's words
        try:
            return ex.run_live(self.ctx.stack, self.rules_path, self.am_path, workdir=self.folder)
        except Exception as exc:
            raise _fail(
                "the rules and alertmanager.yml to load into the running stack",
                f"{type(exc).__name__}: {str(exc)[:500]}",
                "run the notebook's live cell; promtool/amtool name the problem.",
            ) from None


EXERCISE = Exercise(
    number="06",
    folder="ex06_alerting",
    notebook="ex06_alerting.ipynb",
    title="Alerting: SLO rules, routing, infrastructure and GPU monitoring",
    state=Ex06State,
    cell_timeout=150.0,
    total_timeout=300.0,
    make_starter=ex.make_starter_files,
)


# --- SLO arithmetic (the notebook's answers) ----------------------------------------------------
#: Burn rates and error-ratio thresholds of a 99.5% SLO over 30 days (Google SRE workbook).
SLO_ANSWERS = {"fast_burn": 14.4, "slow_burn": 6.0, "fast_threshold": 0.072, "slow_threshold": 0.03}


@EXERCISE.check(points=1, title="SLO arithmetic: burn rates and thresholds")
def test_slo_arithmetic(state: Ex06State) -> None:
    """The notebook's burn rates (2% in 1h, 5% in 6h) and error-ratio thresholds for 99.5%."""
    path = state.folder / "answers_ex06.json"
    try:
        got = {k: float(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError):
        raise _fail(
            "answers_ex06.json written by the notebook",
            "no readable file",
            "complete burn_rate and run the cell that records the answers.",
        ) from None
    wrong = {
        k: got.get(k)
        for k, v in SLO_ANSWERS.items()
        if got.get(k) is None or abs(got[k] - v) > 1e-6 * max(1, v)
    }
    if wrong:
        raise _fail(
            f"{SLO_ANSWERS}",
            f"{wrong}",
            "burn rate = budget share × period in hours / window in hours.",
        )


# --- the rule files ------------------------------------------------------------------------------
@EXERCISE.check(points=2, title="promtool accepts alert_rules.yml and every alert is there")
def test_rules_valid(state: Ex06State) -> None:
    """promtool check rules passes and all twelve alerts of the task table exist."""
    result = promtool.check_rules([state.rules_path], raise_on_error=False)
    if not result.ok:
        raise _fail(
            "promtool check rules to pass", result.output[-600:], "fix the line promtool names."
        )
    state.require_rules()


@EXERCISE.check(points=2, title="Every alert has severity, summary, description and runbook_url")
def test_rule_metadata(state: Ex06State) -> None:
    """Each alert has the severity of the table, a summary, a description with a value, a for:."""
    problems = []
    for name, severity in ex.REQUIRED_ALERTS.items():
        rule = state.require_rules()[name]
        labels, notes = rule.get("labels") or {}, rule.get("annotations") or {}
        if labels.get("severity") != severity:
            problems.append(f"{name}: severity {labels.get('severity')!r}, want {severity!r}")
        for key in ("summary", "description", "runbook_url"):
            if not str(notes.get(key, "")).strip():
                problems.append(f"{name}: no {key}")
        if "{{" not in str(notes.get("description", "")):
            problems.append(f"{name}: description shows no value ({{{{ $value }}}} or a label)")
        if not rule.get("for"):
            problems.append(f"{name}: no for: (one bad scrape would page)")
    if problems:
        raise _fail(
            "severity, summary, description with values, runbook_url and for: on every alert",
            "; ".join(problems[:8]),
            "add the missing labels/annotations; routing keys on severity.",
        )


@EXERCISE.check(points=1, title="Runbooks exist where the runbook_urls point")
def test_runbooks(state: Ex06State) -> None:
    """Every runbook_url ends in runbooks/<file>.md, which exists with three sections or more."""
    problems = ex.runbook_problems(state.require_rules(), state.folder)
    if problems:
        raise _fail(
            "a runbook for every alert in runbooks/",
            "; ".join(problems[:6]),
            "write runbooks/<name>.md with '## What it means', '## Triage', '## Mitigation'.",
        )


@EXERCISE.check(points=2, title="Your promtool unit tests pass and cover firing and not firing")
def test_own_rule_tests(state: Ex06State) -> None:
    """promtool test rules rule_tests.yml passes and tests six alerts both firing and quiet."""
    if not state.tests_path.is_file():
        raise _fail("rule_tests.yml", "no file", "write promtool unit tests in rule_tests.yml.")
    result = promtool.test_rules([state.tests_path])
    if not result.ok:
        raise _fail(
            "promtool test rules rule_tests.yml to pass",
            result.output[-700:],
            "read the FAILED blocks: exp vs got, at which eval_time.",
        )
    gaps = ex.rule_tests_coverage(state.tests_path)
    if gaps:
        raise _fail(
            "a firing and a not-firing case for each of " + ", ".join(ex.TESTED_ALERTS),
            "; ".join(gaps),
            "add alert_rule_test entries before and after the for: boundary.",
        )


def _judge(state: Ex06State, *prefixes: str) -> None:
    rules = state.require_rules()
    problems = ex.judge_cases([c for p in prefixes for c in ex.hidden_cases(p)], rules)
    if problems:
        raise _fail(
            "the same firing times as the reference rules on the hidden input series",
            " | ".join(problems),
            "check for:, the rate window (a long window stretches a burst), "
            "the metric and which side of the ratio is which.",
        )


@EXERCISE.check(
    points=3, title="Hidden promtool cases: latency (for: boundary, one-minute burst)", hidden=True
)
def test_hidden_latency(state: Ex06State) -> None:
    """HighPredictionLatency fires only after five minutes of slowness, never on a one-minute burst."""
    _judge(state, "latency_")


@EXERCISE.check(points=2, title="Hidden promtool cases: error ratio and burn rates", hidden=True)
def test_hidden_errors(state: Ex06State) -> None:
    """HighErrorRate and the burn-rate alerts fire on the reference's inputs exactly as it does."""
    _judge(state, "error_", "burn_")


@EXERCISE.check(
    points=2,
    title="Hidden promtool cases: GPU memory (leak, flapping, noisy allocator)",
    hidden=True,
)
def test_hidden_gpu(state: Ex06State) -> None:
    """The GPU alerts predict a leak, ignore a sawtooth allocator and do not flap."""
    _judge(state, "gpu_")


# --- Alertmanager -----------------------------------------------------------------------------
@EXERCISE.check(points=2, title="amtool accepts alertmanager.yml; receivers point at the sinks")
def test_alertmanager_config(state: Ex06State) -> None:
    """The rendered config passes amtool; pager/slack-ml/team-email exist with the Slack template."""
    path = state.rendered_am
    import yaml

    document = yaml.safe_load(path.read_text()) or {}
    receivers = {r.get("name"): r for r in document.get("receivers") or [] if isinstance(r, dict)}
    problems = [
        f"receiver {n!r} with {k}"
        for n, k in ex.RECEIVER_KINDS.items()
        if not (receivers.get(n) or {}).get(k)
    ]
    slack = ((receivers.get("slack-ml") or {}).get("slack_configs") or [{}])[0]
    text = f"{slack.get('title', '')} {slack.get('text', '')}"
    for needed in ("summary", "runbook_url"):
        if needed not in text:
            problems.append(f"the Slack text/title does not show .Annotations.{needed}")
    for name in ("pager", "slack-ml"):
        configs = (receivers.get(name) or {}).get(ex.RECEIVER_KINDS[name]) or [{}]
        if not configs[0].get("send_resolved", name == "pager"):
            problems.append(f"{name} without send_resolved: true")
    if problems:
        raise _fail(
            "receivers pager (webhook), slack-ml (Slack, with a template), team-email (SMTP)",
            "; ".join(problems),
            "see the receivers table of Task 3.",
        )


@EXERCISE.check(points=2, title="Each severity, and each alert, reaches the right receivers")
def test_routing(state: Ex06State) -> None:
    """amtool routes test: critical -> pager+slack, warning -> slack+email, none -> email; per alert too."""
    path = state.rendered_am
    rules = state.require_rules()
    probes: list[tuple[str, dict[str, str], tuple[str, ...]]] = [
        (
            f"severity={severity or '(none)'}",
            {
                "alertname": "Probe",
                "service": "fraud-gateway",
                **({"severity": severity} if severity else {}),
            },
            tuple(sorted(want)),
        )
        for severity, want in ex.SEVERITY_RECEIVERS.items()
    ]
    probes += [
        (
            f"{name} (labels {rules[name].get('labels') or {}})",
            {
                "alertname": name,
                "service": "fraud-gateway",
                **{k: str(v) for k, v in (rules[name].get("labels") or {}).items()},
            },
            tuple(sorted(ex.SEVERITY_RECEIVERS[severity])),
        )
        for name, severity in ex.REQUIRED_ALERTS.items()
    ]
    routes = ex.routes_for_many(path, [labels for _, labels, _ in probes])
    problems = [
        f"{what} -> {list(got)}, want {list(want)}"
        for (what, _, want), got in zip(probes, routes, strict=True)
        if got != want
    ]
    if problems:
        raise _fail(
            "routing by severity",
            "; ".join(problems[:6]),
            "match on severity with continue: true where one alert goes to two receivers, and give "
            "every rule its severity label (without it, routing falls to the default).",
        )


@EXERCISE.check(points=2, title="A critical alert inhibits the warnings of the same service only")
def test_inhibition(state: Ex06State) -> None:
    """Alertmanager, with your config, mutes a same-service warning but not other services' or the GPU's."""
    verdict = ex.inhibition_probe(state.ctx.stack, state.rendered_am)
    want = {"ErrorBudgetBurnSlow": True, "HighPredictionLatency": False, "GPUMemoryHigh": False}
    if verdict != want:
        raise _fail(
            f"inhibited: {want}",
            f"{verdict or 'no answer from Alertmanager'}",
            "source critical, target warning, equal: [service] — a label both alerts carry; an "
            "equal label that neither carries matches everything.",
        )


# --- live -------------------------------------------------------------------------------------
_payload, _status = ex.note_text, ex.note_status


@EXERCISE.check(
    points=3, title="Live: latency spike fires, Slack gets the runbook link, then resolved"
)
def test_live_latency(state: Ex06State) -> None:
    """HighPredictionLatency fires for the slow gateway; Slack gets firing (runbook) then resolved."""
    run = state.live
    service = run.services["latency"]
    fired = run.firing("HighPredictionLatency", service)
    if fired is None:
        raise _fail(
            f"HighPredictionLatency firing for service {service} during the spike",
            f"alerts that fired: {sorted(set(a for a, _ in run.first_firing))}; {run.errors[:2]}",
            "p99 from ml_prediction_duration_seconds_bucket, by (service, le), > 1.",
        )
    url = str(
        (state.rules["HighPredictionLatency"].get("annotations") or {}).get("runbook_url", "")
    )
    marker = url if "{{" not in url else "runbooks/"
    slack = [
        n
        for n in run.sent(receiver="slack-ml")
        if service in _payload(n) or "HighPredictionLatency" in _payload(n)
    ]
    firing = [n for n in slack if _status(n) == "firing" and marker and marker in _payload(n)]
    resolved = [
        n
        for n in slack
        if _status(n) == "resolved" and (not firing or n.received_at > firing[0].received_at)
    ]
    if not firing or not resolved:
        raise _fail(
            "a Slack message (firing, with the runbook link) and later a resolved one",
            f"{len(firing)} firing with {marker!r}, {len(resolved)} resolved; slack got: "
            f"{[n.describe() for n in slack][:6]}",
            "send_resolved: true on the Slack receiver; put .Annotations.runbook_url in its text.",
        )


@EXERCISE.check(
    points=2, title="Live: error burst pages and posts to Slack; its warning is inhibited"
)
def test_live_error_burst(state: Ex06State) -> None:
    """The burst reaches pager and Slack; a warning of the same service is held back as inhibited."""
    run = state.live
    service = run.services["errors"]
    pager = [
        n for n in run.sent(receiver="pager") if service in _payload(n) and _status(n) == "firing"
    ]
    slack = [n for n in run.sent(receiver="slack-ml") if service in _payload(n)]
    inhibited = sorted(
        a for (a, k), states in run.am_states.items() if k == service and "inhibited" in states
    )
    problems = []
    if not pager:
        problems.append(f"no pager notification for {service}")
    if not slack:
        problems.append(f"no Slack notification for {service}")
    if not inhibited:
        problems.append(f"no inhibited warning of {service} (fired: {run.fired_for(service)})")
    else:
        first_resolved = min(
            (t for (a, k), t in run.resolved_at.items() if k == service and a not in inhibited),
            default=float("inf"),
        )
        leaked = [
            n.describe()
            for n in slack
            if any(a in _payload(n) for a in inhibited)
            and n.received_at < first_resolved
            and _status(n) == "firing"
        ]
        if leaked:
            problems.append(
                f"inhibited warning(s) reached Slack while the critical was firing: {leaked[:3]}"
            )
    if problems:
        raise _fail(
            "pager + Slack for the critical, the same service's warning inhibited",
            "; ".join(problems),
            "critical routes to pager (continue: true) and slack-ml; inhibit warning by critical, equal: [service].",
        )


@EXERCISE.check(points=2, title="Live: the GPU leak is predicted before memory is full")
def test_live_gpu_leak(state: Ex06State) -> None:
    """GPUMemoryWillExhaust fires during the leak, earlier than GPUMemoryHigh (if that fires at all)."""
    run = state.live
    # The grader's simulated GPU carries service=<run's gpu service>; a rule that aggregates the
    # label away is judged on whatever GPU alerts fired (a real GPU of the stack stays idle).
    gpu = run.services["gpu"]
    key = gpu if any(k == gpu for _, k in run.first_firing) else ""
    predicted, high = run.firing("GPUMemoryWillExhaust", key), run.firing("GPUMemoryHigh", key)
    if predicted is None or (high is not None and high <= predicted):

        def when(t: float | None) -> str:
            return "never" if t is None else f"{t - run.started:.1f} s"

        raise _fail(
            "GPUMemoryWillExhaust firing before GPUMemoryHigh",
            f"GPUMemoryWillExhaust: {when(predicted)}, GPUMemoryHigh: {when(high)}",
            "predict_linear(DCGM_FI_DEV_FB_FREE[30m], 3600) < 0 — extrapolate free memory an hour ahead.",
        )


@EXERCISE.check(points=1, title="Live: the team email arrives through SMTP")
def test_live_email(state: Ex06State) -> None:
    """At least one email about the live run's alerts reached the SMTP sink."""
    mails = [n for n in state.live.notifications if n.kind == "email" and state.live.mine(n)]
    if not mails:
        raise _fail(
            "an email notification at the SMTP sink",
            "none",
            "route warnings to team-email too; smtp_smarthost: ${SMTP_SMARTHOST}, smtp_require_tls: false.",
        )


@EXERCISE.check(points=1, title="Live: nothing fires on steady traffic")
def test_live_steady_quiet(state: Ex06State) -> None:
    """No alert fired for the steady gateway while the scenarios' alerts did fire."""
    run = state.live
    steady, latency = run.services["steady"], run.services["latency"]
    noisy = run.fired_for(steady)
    if noisy or run.firing("HighPredictionLatency", latency) is None:
        raise _fail(
            f"no alert for service {steady} (while the latency alert does fire elsewhere)",
            f"fired for {steady}: {noisy}; latency alert fired: "
            f"{run.firing('HighPredictionLatency', latency) is not None}",
            "a threshold that healthy traffic crosses pages people for nothing; check each ratio's direction.",
        )


# --- infrastructure dashboard ------------------------------------------------------------------
@EXERCISE.check(points=2, title="The infrastructure dashboard is valid and every panel has data")
def test_infra_dashboard(state: Ex06State) -> None:
    """dashboards/infrastructure.json passes the dashboard checks and shows the six USE/GPU signals."""
    from lab_stack import dashboards

    path = state.folder / "dashboards" / "infrastructure.json"
    try:
        board = dashboards.check(path)
    except Exception as exc:
        raise _fail(
            "a valid dashboards/infrastructure.json", str(exc)[:600], "fix the panels it names."
        ) from None
    queries = " ".join(t.expr for p in board.panels for t in p.targets if getattr(t, "expr", None))
    missing = [s for s, pattern in DASHBOARD_SIGNALS.items() if not re.search(pattern, queries)]
    problems = dashboards.run(board, stack=state.ctx.stack).problems()
    if missing or problems:
        raise _fail(
            "panels for CPU, memory, disk I/O, network, GPU utilisation and GPU memory, each with data",
            "; ".join(([f"no query for {', '.join(missing)}"] if missing else []) + problems[:5]),
            "node_exporter (node_cpu_seconds_total, node_memory_*, node_disk_*, node_network_*) "
            "and DCGM (DCGM_FI_DEV_GPU_UTIL, DCGM_FI_DEV_FB_USED/FREE).",
        )


# --- mutants ----------------------------------------------------------------------------------
# The rules and the Alertmanager configuration are %%writefile cells of the notebook, so their
# mistakes are ordinary mutants of its code cells. Each aims at static checks only (promtool,
# amtool, Alertmanager's inhibition), so grading a mutant never needs the live run.
EXERCISE.mutant(
    "burn_rate_days_not_hours",
    description="the burn-rate helper forgets the 24 hours of a day (thresholds 24x too small)",
    aims=["slo_arithmetic"],
    replace={
        "return budget_share * period_days * 24.0 / window_hours": "return budget_share * period_days / window_hours"
    },
)
EXERCISE.mutant(
    "for_missing",
    description="HighPredictionLatency without for: — one slow scrape pages",
    aims=["hidden_latency", "rule_metadata"],
    replace={"          ) > 1\n        for: 5m\n": "          ) > 1\n"},
)
EXERCISE.mutant(
    "quantile_wrong_metric",
    description="the latency quantile is taken over the confidence histogram, not the duration one",
    aims=["hidden_latency"],
    replace={
        "rate(ml_prediction_duration_seconds_bucket[2m])": "rate(ml_prediction_confidence_bucket[2m])"
    },
)
EXERCISE.mutant(
    "error_ratio_inverted",
    description="HighErrorRate divides all predictions by the errors (the ratio upside down)",
    aims=["hidden_errors"],
    replace={
        '          sum by (service) (rate(ml_predictions_total{status="error"}[5m]))\n'
        "            / sum by (service) (rate(ml_predictions_total[5m]))\n"
        "          > 0.05\n": "          sum by (service) (rate(ml_predictions_total[5m]))\n"
        '            / sum by (service) (rate(ml_predictions_total{status="error"}[5m]))\n'
        "          > 0.05\n"
    },
)
EXERCISE.mutant(
    "severity_missing",
    description="HighErrorRate carries no severity label, so it falls to the default route",
    aims=["routing", "rule_metadata"],
    replace={
        "        for: 5m\n        labels:\n          severity: critical\n": "        for: 5m\n"
    },
)
EXERCISE.mutant(
    "inhibition_matches_no_label",
    description="the inhibition rule's equal: names a label no alert carries (mutes every warning)",
    aims=["inhibition"],
    replace={"    equal: [service]\n": "    equal: [cluster]\n"},
)
EXERCISE.mutant(
    "predict_linear_short_range",
    description="GPUMemoryWillExhaust extrapolates from 5 minutes: a sawtooth allocator looks like a leak",
    aims=["hidden_gpu"],
    replace={"DCGM_FI_DEV_FB_FREE[30m]": "DCGM_FI_DEV_FB_FREE[5m]"},
)
