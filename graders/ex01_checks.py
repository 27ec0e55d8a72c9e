"""Exercise 01 — what the grader reads from the stack, once, and the starter files of the release.

The student's ``prometheus.yml`` is applied by the notebook
(``provisioning.apply_prometheus_config``), which leaves a rendered copy (placeholders filled) in
``<config_dir>/prometheus/student/prometheus.yml``. :class:`Ex01Snapshot` reads everything the
checks need in one go — the rendered copy (it must be written while the graded kernel ran), the
configuration Prometheus runs, the scrape targets, the Grafana files the notebook wrote and every
dashboard query's result — and then gives Prometheus the lab's default configuration back, which
exercises 02-06 expect. The verdicts are lists of problems (empty: passed), computed by the
library functions of :mod:`lab_stack.provisioning` and :mod:`lab_stack.dashboards`.

Example:
    >>> snapshot = Ex01Snapshot(ctx)              # doctest: +SKIP
    >>> snapshot.problems["jobs_up"]              # doctest: +SKIP
    []
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import nbformat
import psutil
import structlog
import yaml

from graders.context import GradingContext
from lab_stack import dashboards, provisioning
from lab_stack.clients import GrafanaClient
from lab_stack.errors import LabError

__all__ = [
    "DASHBOARDS_DIR",
    "DASHBOARD_FILE",
    "DATASOURCES_FILE",
    "JOBS",
    "KINDS",
    "PANEL_SIGNALS",
    "PROMETHEUS_FILE",
    "PROVIDERS_FILE",
    "STUDENT_FILES",
    "Ex01Snapshot",
    "blank_dashboard_queries",
    "make_starter_files",
    "writefile_cells",
]

log = structlog.get_logger(__name__)

#: Scrape jobs the student's configuration must have, each with every target UP.
JOBS = ("prometheus", "ml-service", "node", "dcgm", "pushgateway")
#: Datasource types (and, in this course, their fixed uids).
KINDS = ("prometheus", "loki", "tempo", "alertmanager")
PROMETHEUS_FILE = "prometheus.yml"
DATASOURCES_FILE = "grafana/provisioning/datasources/datasources.yml"
PROVIDERS_FILE = "grafana/provisioning/dashboards/dashboards.yml"
DASHBOARDS_DIR = "grafana/dashboards"
DASHBOARD_FILE = f"{DASHBOARDS_DIR}/lab_stack.json"
#: The files the notebook's ``%%writefile`` cells write (the solution folder ships them too).
STUDENT_FILES = (PROMETHEUS_FILE, DATASOURCES_FILE, PROVIDERS_FILE, DASHBOARD_FILE)
#: What the first dashboard must show: question -> pattern one of its queries matches.
PANEL_SIGNALS = {
    "are the targets up (`up`)": r"\bup\b",
    "how long scrapes take (`scrape_duration_seconds`)": r"\bscrape_duration_seconds\b",
    "how many samples are ingested (`scrape_samples_scraped` or "
    "`prometheus_tsdb_head_samples_appended_total`)": r"\b(scrape_samples_scraped|"
    r"prometheus_tsdb_head_samples_appended_total)\b",
}
#: The checks whose verdicts a snapshot holds.
_CHECKS = (
    "config_running",
    "jobs_up",
    "pushgateway_honor_labels",
    "datasources_valid",
    "dashboard_provider",
    "dashboard_valid",
    "dashboard_queries_run",
    "dashboard_has_data",
    "dashboard_panels",
)
_WRITEFILE = re.compile(r"\A%%writefile\s+(?:-a\s+)?(\S+)[^\n]*\n")


def _kernel_started(ctx: GradingContext) -> float:
    """When the graded kernel started (files the run wrote are newer); a generous bound if gone."""
    try:
        return float(psutil.Process(ctx.kernel_pid).create_time()) - 1.0
    except psutil.Error:
        return ctx.finished_at - 3600.0


class Ex01Snapshot:
    """Every ex01 verdict, read from the live stack at construction; then Prometheus is reset.

    Attributes:
        ctx: the grading context.
        problems: check name -> the problems found (empty: the check passes).
        run: the dashboard's query results (None when the dashboard could not be loaded).
    """

    def __init__(self, ctx: GradingContext, *, reset: bool = True) -> None:
        self.ctx = ctx
        self.folder = Path(ctx.workdir)
        self.stack = ctx.stack
        self.problems: dict[str, list[str]] = {name: [] for name in _CHECKS}
        self.run: dashboards.DashboardRun | None = None
        self.rendered: dict[str, Any] | None = None
        try:
            self._guard(
                self._read_prometheus, "config_running", "jobs_up", "pushgateway_honor_labels"
            )
            self._guard(self._read_grafana_files, "datasources_valid", "dashboard_provider")
            self._guard(
                self._read_dashboard,
                "dashboard_valid",
                "dashboard_queries_run",
                "dashboard_has_data",
                "dashboard_panels",
            )
        finally:
            if reset:
                try:
                    self.stack.reset_config("prometheus")
                except LabError as exc:  # the verdicts stand; the next exercise will say more
                    log.warning("ex01.reset_failed", error=str(exc))

    def _guard(self, step: Callable[[], None], *names: str) -> None:
        try:
            step()
        except Exception as exc:  # a verdict, never a crash of the grade
            for name in names:
                self.problems[name] = self.problems[name] or [
                    f"the grader could not read this part: {type(exc).__name__}: {exc}"
                ]

    # --- prometheus.yml ---------------------------------------------------------------------
    def _read_prometheus(self) -> None:
        problems = self.problems
        path = self.stack.settings.config_dir / "prometheus" / "student" / PROMETHEUS_FILE
        if not path.is_file() or path.stat().st_mtime < _kernel_started(self.ctx):
            missing = (
                f"no prometheus.yml was applied while the notebook ran ({path} is "
                f"{'older than this run' if path.is_file() else 'missing'}). Hint: run the Task 1 "
                "cell: provisioning.apply_prometheus_config(stack, 'prometheus.yml', "
                "extra={'ML_SERVICE': services.gateway_url}); promtool says what is wrong if it "
                "refuses the file."
            )
            for name in ("config_running", "jobs_up", "pushgateway_honor_labels"):
                problems[name] = [missing]
            return
        document = yaml.safe_load(path.read_text())
        self.rendered = document if isinstance(document, dict) else {}
        with self.stack.prometheus as prom:
            running = provisioning.running_config_problems(prom, path)
            content = self._content_problems(self.rendered, prom)
            problems["config_running"] = running + content
            if running:
                problems["jobs_up"] = [
                    "Prometheus does not run your configuration, so its targets are not yours: "
                    + running[0]
                ]
            else:
                declared = {str(j.get("job_name")) for j in self._jobs(self.rendered)}
                missing_jobs = [j for j in JOBS if j not in declared]
                problems["jobs_up"] = [
                    f"your prometheus.yml has no scrape job {job!r}. Hint: add it to "
                    "scrape_configs with its ${..._ADDR} placeholder as the target."
                    for job in missing_jobs
                ] or provisioning.job_problems(prom, JOBS, timeout=20)
        problems["pushgateway_honor_labels"] = self._honor_labels_problems(self.rendered)

    @staticmethod
    def _jobs(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        return [j for j in document.get("scrape_configs") or [] if isinstance(j, Mapping)]

    def _content_problems(self, document: Mapping[str, Any], prom: Any) -> list[str]:
        values = self.stack.placeholders(seen_from="prometheus")
        problems = []
        declared = [str(j.get("job_name")) for j in self._jobs(document)]
        missing = [j for j in JOBS if j not in declared]
        if missing:
            problems.append(
                f"your prometheus.yml has scrape jobs {declared} but not {missing}. Hint: add a "
                "scrape_configs entry per job (job_name, static_configs with the placeholder)."
            )
        targets = [
            str(t)
            for am in (document.get("alerting") or {}).get("alertmanagers") or []
            for group in (am or {}).get("static_configs") or []
            for t in (group or {}).get("targets") or []
        ]
        if values.get("ALERTMANAGER_ADDR") not in targets:
            problems.append(
                f"alerting sends to {targets or 'no Alertmanager'}. Hint: alerting: "
                'alertmanagers: [{static_configs: [{targets: ["${ALERTMANAGER_ADDR}"]}]}].'
            )
        urls = [str((rw or {}).get("url")) for rw in document.get("remote_write") or []]
        store = values.get("VICTORIAMETRICS_URL", "")
        if not any(u.startswith(store) and u.endswith("/api/v1/write") for u in urls):
            problems.append(
                f"remote_write goes to {urls or 'nowhere'}. Hint: remote_write: "
                '[{url: "${VICTORIAMETRICS_URL}/api/v1/write"}] copies every sample to the '
                "long-term store."
            )
        if not document.get("rule_files"):
            problems.append(
                "prometheus.yml loads no rule files. Hint: rule_files: [rules/*.yml] (the folder "
                "next to the notebook)."
            )
        elif not prom.rules():
            problems.append(
                f"Prometheus loaded no rule group from {document.get('rule_files')}. Hint: the "
                "path is relative to prometheus.yml's folder: rules/*.yml."
            )
        return problems

    def _honor_labels_problems(self, document: Mapping[str, Any]) -> list[str]:
        push = [j for j in self._jobs(document) if j.get("job_name") == "pushgateway"]
        if not push:
            return [
                "your prometheus.yml has no pushgateway job. Hint: add job_name: pushgateway "
                "with the ${PUSHGATEWAY_ADDR} target."
            ]
        if push[0].get("honor_labels") is not True:
            return [
                f"the pushgateway job has honor_labels: {push[0].get('honor_labels')!r}, so "
                "Prometheus renames the pushed job/instance labels to exported_job/"
                "exported_instance. Hint: set honor_labels: true on that job."
            ]
        return []

    # --- Grafana provisioning -----------------------------------------------------------------
    def _datasources(self) -> list[provisioning.Datasource]:
        """The student's datasources; the lab's when the file cannot be read (judged elsewhere)."""
        try:
            return provisioning.load_datasources(self.folder / DATASOURCES_FILE)
        except LabError:
            return list(provisioning.LAB_DATASOURCES)

    def _grafana(self) -> GrafanaClient | None:
        if "grafana" not in self.stack.components:
            return None
        return GrafanaClient(self.stack.url("grafana"), auth=("admin", "admin"))

    def _read_grafana_files(self) -> None:
        ds_path = self.folder / DATASOURCES_FILE
        try:
            found = [
                str(p)
                for p in provisioning.validate_datasources(
                    ds_path, require_types=KINDS, require_uids={k: k for k in KINDS}
                )
            ]
        except LabError as exc:
            found = [str(exc)]
        grafana = self._grafana()
        if not found and grafana is not None:  # with Grafana: also what it says of each source
            with grafana:
                found = provisioning.grafana_problems(
                    grafana, provisioning.load_datasources(ds_path)
                )
        self.problems["datasources_valid"] = found
        try:
            self.problems["dashboard_provider"] = [
                str(p)
                for p in provisioning.validate_dashboard_providers(
                    self.folder / PROVIDERS_FILE, dashboards_dir=self.folder / DASHBOARDS_DIR
                )
            ]
        except LabError as exc:
            self.problems["dashboard_provider"] = [str(exc)]

    # --- the dashboard --------------------------------------------------------------------------
    def _read_dashboard(self) -> None:
        problems = self.problems
        path = self.folder / DASHBOARD_FILE
        sources = self._datasources()
        try:
            board = dashboards.load(path)
        except LabError as exc:
            for name in ("dashboard_valid", "dashboard_queries_run", "dashboard_has_data"):
                problems[name] = [str(exc)]
            problems["dashboard_panels"] = [str(exc)]
            return
        problems["dashboard_valid"] = [
            str(p) for p in dashboards.validate(board, datasources=sources)
        ]
        grafana = self._grafana()
        if not problems["dashboard_valid"] and grafana is not None:
            problems["dashboard_valid"] = _grafana_dashboard_problems(grafana, path, board.uid)
        run = dashboards.run(board, stack=self.stack, datasources=sources, window=120)
        self.run = run
        if not run.panels:
            none = "the dashboard has no panel with a query. Hint: add the panels of Task 4."
            for name in ("dashboard_queries_run", "dashboard_has_data", "dashboard_panels"):
                problems[name] = [none]
            return
        problems["dashboard_queries_run"] = run.query_problems()
        problems["dashboard_has_data"] = run.empty_panels()
        queries = [t.query for p in run.panels for t in p.targets if t.query.strip()]
        problems["dashboard_panels"] = [
            f"no panel query answers {question}; your queries: {queries}. Hint: add a panel for it."
            for question, pattern in PANEL_SIGNALS.items()
            if not any(re.search(pattern, q) for q in queries)
        ]


def _grafana_dashboard_problems(grafana: GrafanaClient, path: Path, uid: str) -> list[str]:
    """Import the dashboard into the lab's Grafana, then read it back by uid (Grafana 10.2's word)."""
    document = json.loads(path.read_text())
    document["id"] = None
    try:
        response = httpx.post(
            f"{grafana.base_url}/api/dashboards/db",
            json={"dashboard": document, "overwrite": True},
            auth=("admin", "admin"),
            timeout=10.0,
            trust_env=False,
        )
    except httpx.HTTPError as exc:
        return [f"Grafana did not answer the dashboard import: {exc}. Hint: `lab status`."]
    if response.status_code != 200:
        return [
            f"Grafana refused the dashboard (HTTP {response.status_code}): {response.text[:300]}. "
            "Hint: export it again from Grafana (Share → Export → Save to file)."
        ]
    with grafana:
        return provisioning.grafana_problems(grafana, [], [uid])


# --- the release's starter files ------------------------------------------------------------------


def writefile_cells(nb: Any) -> dict[str, Any]:
    """``{path: cell}`` of the notebook's ``%%writefile PATH`` code cells."""
    found = {}
    for cell in nb.cells:
        match = _WRITEFILE.match(cell.source) if cell.cell_type == "code" else None
        if match:
            found[match.group(1)] = cell
    return found


def blank_dashboard_queries(text: str) -> str:
    """Dashboard JSON text with every target's ``expr`` (and TraceQL ``query``) emptied."""
    document = json.loads(text)

    def panels(items: Sequence[Any]) -> list[Mapping[str, Any]]:
        out: list[Mapping[str, Any]] = []
        for item in items:
            if isinstance(item, dict):
                out.append(item)
                out.extend(panels(item.get("panels") or []))
        return out

    for panel in panels(document.get("panels") or []):
        for target in panel.get("targets") or []:
            for key in ("expr", "query"):
                if key in target:
                    target[key] = ""
    return json.dumps(document, indent=2) + "\n"


def make_starter_files(folder: Path) -> list[Path]:
    """Turn the generated release folder of exercise 01 into the starter; return what changed.

    nbgrader clears the solution regions of the notebook's ``%%writefile`` cells (the YAML files);
    this empties every query of the dashboard cell (its JSON cannot hold a region), and removes the
    solved copies of the student's files and the grading notes shipped next to the notebook
    (the notebook writes the files when it runs).
    """
    changed: list[Path] = []
    for name in (*STUDENT_FILES, "CHECKS.md"):
        path = folder / name
        if path.is_file():
            path.unlink()
            changed.append(path)
    for notebook in sorted(folder.glob("*.ipynb")):
        nb = nbformat.read(notebook, as_version=4)  # type: ignore[no-untyped-call]
        cell = writefile_cells(nb).get(DASHBOARD_FILE)
        if cell is None:
            continue
        header, _, body = cell.source.partition("\n")
        new = f"{header}\n{blank_dashboard_queries(body)}".rstrip("\n")
        if new != cell.source:
            cell.source = new
            nbformat.write(nb, notebook)  # type: ignore[no-untyped-call]
            changed.append(notebook)
    for folder_path in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
        if not any(folder_path.iterdir()):
            folder_path.rmdir()
    return changed
