"""Exercise 01 — deploy the stack: checks, points and mutants.

Verdicts come from Prometheus (the configuration it runs, its targets, its rules), the Grafana
provisioning files the notebook wrote (checked as Grafana 10.2 reads them, and by a running Grafana
when the stack has one) and the backends' answers to every dashboard query. Everything is read
once, right after the notebook ran (:class:`graders.ex01_checks.Ex01Snapshot`); then Prometheus
gets the lab's default configuration back.

The student's files are written by the notebook's ``%%writefile`` cells, so the mutants below
(text replacements in the solution's code cells) reach them, and ``nbgrader autograde`` (which
copies the source folder's solved files over a submission) grades what the student wrote.

Run one submission: ``pytest graders/test_ex01_stack.py --notebook PATH`` or ``make grade EX=01``.
"""

from __future__ import annotations

from functools import cached_property

from graders import ex01_checks as ex
from graders.context import GradingContext
from graders.errors import CheckFailed
from graders.registry import Exercise

__all__ = ["EXERCISE", "Ex01State"]


class Ex01State:
    """The grading state: one snapshot of the live stack, taken on first use."""

    def __init__(self, ctx: GradingContext) -> None:
        self.ctx = ctx

    @cached_property
    def snapshot(self) -> ex.Ex01Snapshot:
        """Everything the checks judge, read once (then Prometheus's default config is restored)."""
        return ex.Ex01Snapshot(self.ctx)

    def verdict(self, name: str, expected: str) -> None:
        """Raise :class:`CheckFailed` with the first problem of check ``name``, if any."""
        problems = self.snapshot.problems[name]
        if not problems:
            return
        first = str(problems[0])
        found, _, hint = first.partition(" Hint: ")
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise CheckFailed(
            expected=expected,
            found=found.rstrip(". ") + more,
            hint=hint or "fix the file named above, run its cell and the cells after it again.",
        )


EXERCISE = Exercise(
    number="01",
    folder="ex01_stack",
    notebook="ex01_stack.ipynb",
    title="Deploy the observability stack",
    state=Ex01State,
    cell_timeout=120.0,
    total_timeout=240.0,
    make_starter=ex.make_starter_files,
)


@EXERCISE.check(
    points=2, title="Prometheus runs your prometheus.yml (jobs, alerting, remote_write, rules)"
)
def test_config_running(state: Ex01State) -> None:
    """The applied file is the one Prometheus runs and has the five jobs, alerting, remote_write and rules."""
    state.verdict(
        "config_running",
        "Prometheus running your prometheus.yml, with the five scrape jobs, Alertmanager, "
        "remote_write to VictoriaMetrics and rules/*.yml",
    )


@EXERCISE.check(points=3, title="Every required job has targets and all are UP")
def test_jobs_up(state: Ex01State) -> None:
    """Jobs prometheus, ml-service, node, dcgm and pushgateway each have targets, all UP."""
    state.verdict("jobs_up", f"jobs {', '.join(ex.JOBS)} each with targets, all UP")


@EXERCISE.check(points=1, title="The pushgateway job keeps the pushed labels (honor_labels)")
def test_pushgateway_honor_labels(state: Ex01State) -> None:
    """The pushgateway job sets honor_labels: true."""
    state.verdict("pushgateway_honor_labels", "honor_labels: true on the pushgateway job")


@EXERCISE.check(points=3, title="Grafana datasources: four kinds, fixed uids, links that resolve")
def test_datasources_valid(state: Ex01State) -> None:
    """The datasource file is valid and its cross-links resolve (and Grafana finds them healthy)."""
    state.verdict(
        "datasources_valid",
        "datasources prometheus, loki, tempo, alertmanager (those uids) whose links "
        "(derivedFields, tracesToLogsV2, tracesToMetrics, serviceMap) name provisioned uids",
    )


@EXERCISE.check(points=1, title="The dashboard provider points at the dashboards folder")
def test_dashboard_provider(state: Ex01State) -> None:
    """The provider file is valid and its folder holds the dashboard."""
    state.verdict("dashboard_provider", "a valid file provider whose folder holds lab_stack.json")


@EXERCISE.check(points=2, title="The dashboard is well formed (keys, panels, grid, datasources)")
def test_dashboard_valid(state: Ex01State) -> None:
    """The dashboard passes the structural checks against the student's datasources."""
    state.verdict(
        "dashboard_valid",
        "a dashboard whose panels have known types, grid positions inside 24 columns without "
        "overlap, and queries on your provisioned datasources",
    )


@EXERCISE.check(points=2, title="Every panel query is accepted by its backend")
def test_dashboard_queries_run(state: Ex01State) -> None:
    """Prometheus (or Loki, Tempo) accepts every panel query."""
    state.verdict("dashboard_queries_run", "every panel query accepted by its backend")


@EXERCISE.check(points=2, title="Every panel shows data", hidden=True)
def test_dashboard_has_data(state: Ex01State) -> None:
    """Every query panel returns data over the last two minutes."""
    state.verdict("dashboard_has_data", "data in every panel over the last 2 minutes")


@EXERCISE.check(
    points=2, title="The dashboard answers: targets up, scrape duration, samples ingested"
)
def test_dashboard_panels(state: Ex01State) -> None:
    """Some panel queries `up`, one `scrape_duration_seconds`, one the samples ingested."""
    state.verdict(
        "dashboard_panels", "panels over up, scrape_duration_seconds and ingested samples"
    )


EXERCISE.mutant(
    "wrong_port",
    description="the node job scrapes a port where nothing listens",
    aims=["jobs_up"],
    replace={'targets: ["${NODE_EXPORTER_ADDR}"]': 'targets: ["127.0.0.1:1"]'},
)
EXERCISE.mutant(
    "uid_typo",
    description="the Tempo datasource's uid has a typo, so the Loki → Tempo link dangles",
    aims=["datasources_valid"],
    replace={"    uid: tempo\n": "    uid: tmepo\n"},
)
EXERCISE.mutant(
    "promql_typo",
    description="a panel's PromQL misses its closing parenthesis",
    aims=["dashboard_queries_run", "dashboard_has_data"],
    replace={'"expr": "sum by (job) (up)"': '"expr": "sum by (job) (up"'},
)
EXERCISE.mutant(
    "missing_metric",
    description="a panel queries scrape_duration_second, a metric that does not exist",
    aims=["dashboard_has_data"],
    replace={"(scrape_duration_seconds)": "(scrape_duration_second)"},
)
EXERCISE.mutant(
    "no_honor_labels",
    description="the pushgateway job lets Prometheus overwrite the pushed job/instance labels",
    aims=["pushgateway_honor_labels"],
    replace={"    honor_labels: true": "    honor_labels: false"},
)
