"""The student's stack configuration files, checked and applied without Grafana.

Three things live here:

* **Grafana provisioning files**, checked offline as Grafana 10.2 would read them:
  :func:`load_datasources` / :func:`validate_datasources` (types, unique names and uids, the
  Loki → Tempo ``derivedFields`` and Tempo → Loki/Prometheus links resolving to provisioned uids,
  each ``matcherRegex`` compiling with exactly one group, ``$$`` escaping) and
  :func:`validate_dashboard_providers`.
* **Placeholders in ``prometheus.yml``**: the stack's ports differ between machines (free-port
  fallback, test stacks), so a student's file names targets as ``${NODE_EXPORTER_ADDR}``
  (``host:port``) or ``${PROMETHEUS_URL}`` (a URL); :func:`render_prometheus_config` fills them in
  from the running stack and :func:`apply_prometheus_config` applies the result (promtool first).
* **Exercise 01 checks** as library functions returning a list of problems (empty = pass):
  :func:`running_config_problems`, :func:`job_problems`, :func:`grafana_problems`.

Example:
    >>> from lab_stack.provisioning import validate_datasources
    >>> validate_datasources("solutions/ex01_stack/grafana/provisioning/datasources/datasources.yml")
    []
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import yaml

from lab_stack.errors import ConfigError, LabError

if TYPE_CHECKING:
    from lab_stack.clients import GrafanaClient, PrometheusClient
    from lab_stack.stack import Stack

__all__ = [
    "DATASOURCE_TYPES",
    "LAB_DATASOURCES",
    "Datasource",
    "Problem",
    "ProvisioningError",
    "apply_prometheus_config",
    "check_datasources",
    "grafana_problems",
    "job_problems",
    "load_datasources",
    "placeholders",
    "render_prometheus_config",
    "running_config_problems",
    "validate_dashboard_providers",
    "validate_datasources",
]

#: Datasource plugin types the course provisions (and the core ones a student may add).
DATASOURCE_TYPES = frozenset(
    {
        "prometheus",
        "loki",
        "tempo",
        "alertmanager",
        "jaeger",
        "zipkin",
        "elasticsearch",
        "graphite",
        "influxdb",
        "mysql",
        "postgres",
        "testdata",
        "grafana-testdata-datasource",
    }
)


class ProvisioningError(ConfigError):
    """A provisioning or config file has problems; ``problems`` lists each one."""

    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a file: where (``datasources[1].jsonData...``) and what."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


@dataclass(frozen=True)
class Datasource:
    """A provisioned Grafana datasource: what a dashboard's references resolve against."""

    uid: str
    name: str
    type: str
    url: str = ""
    is_default: bool = False
    json_data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def time_interval(self) -> str:
        """The scrape interval Grafana assumes (``jsonData.timeInterval``), ``""`` when unset."""
        value = self.json_data.get("timeInterval", "")
        return str(value) if value else ""


#: The datasources the course provisions (same uids in every exercise and solution).
LAB_DATASOURCES: tuple[Datasource, ...] = (
    Datasource(
        "prometheus",
        "Prometheus",
        "prometheus",
        "http://prometheus:9090",
        True,
        {"timeInterval": "1s"},
    ),
    Datasource("loki", "Loki", "loki", "http://loki:3100"),
    Datasource("tempo", "Tempo", "tempo", "http://tempo:3200"),
    Datasource(
        "alertmanager",
        "Alertmanager",
        "alertmanager",
        "http://alertmanager:9093",
        json_data={"implementation": "prometheus"},
    ),
)

# --- Grafana's environment-variable expansion ------------------------------------------------

# Grafana expands $VAR and ${VAR} in provisioning files; $$ is a literal $.
_ENV_REF = re.compile(r"\$\$|\$\{([^}]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def _expand(
    text: str, where: str, problems: list[Problem] | None, env: Mapping[str, str] | None = None
) -> str:
    """``text`` as Grafana reads it: ``$$`` → ``$``, ``$VAR``/``${VAR}`` → the variable's value."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) if match.group(1) is not None else match.group(2)
        if name.startswith("__") and problems is not None:
            problems.append(
                Problem(
                    where,
                    (
                        f"{match.group(0)!r} is read by Grafana as an environment variable when it loads the "
                        f"file, so the link would get an empty value. Hint: escape the dollar: write "
                        f"'${match.group(0)}' (in provisioning YAML `$` is written `$$`)."
                    ),
                )
            )
        return (env or {}).get(name, "")

    return _ENV_REF.sub(replace, text)


def _walk_strings(value: Any, where: str) -> Iterable[tuple[str, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _walk_strings(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk_strings(item, f"{where}[{index}]")


def _read_yaml(path: str | Path | Mapping[str, Any], what: str) -> tuple[Any, str]:
    if isinstance(path, Mapping):
        return dict(path), what
    source = Path(path)
    try:
        text = source.read_text()
    except FileNotFoundError:
        raise ProvisioningError(
            f"{what} {source} does not exist. Hint: check the path (the exercise folder holds "
            "grafana/provisioning/datasources/ and grafana/provisioning/dashboards/)."
        ) from None
    try:
        return yaml.safe_load(text), str(source)
    except yaml.YAMLError as exc:
        raise ProvisioningError(
            f"{source} is not valid YAML: {exc}. Hint: check the indentation at the line named."
        ) from exc


# --- datasources --------------------------------------------------------------------------------


def load_datasources(path: str | Path | Mapping[str, Any]) -> list[Datasource]:
    """The datasources a provisioning file declares (no checks; see :func:`validate_datasources`).

    Raises:
        ProvisioningError: the file is missing, is not YAML, or has no ``datasources`` list.
    """
    document, name = _read_yaml(path, "the datasource provisioning file")
    items = document.get("datasources") if isinstance(document, Mapping) else None
    if not isinstance(items, list):
        raise ProvisioningError(
            f"{name} has no `datasources:` list. Hint: a datasource file starts with "
            "`apiVersion: 1` then `datasources:` and one entry per datasource."
        )
    found = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        json_data = item.get("jsonData")
        found.append(
            Datasource(
                uid=str(item.get("uid") or ""),
                name=str(item.get("name") or ""),
                type=str(item.get("type") or ""),
                url=_expand(str(item.get("url") or ""), "", None),
                is_default=bool(item.get("isDefault", False)),
                json_data=dict(json_data) if isinstance(json_data, Mapping) else {},
            )
        )
    return found


def _regex_problem(pattern: str) -> str | None:
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        return f"does not compile: {exc}"
    if compiled.groups != 1:
        return (
            f"has {compiled.groups} capture groups; Grafana takes the trace id from exactly one. "
            "Hint: make other groups non-capturing with (?:...)"
        )
    return None


def _link(
    problems: list[Problem],
    where: str,
    uid: Any,
    by_uid: Mapping[str, Datasource],
    want: str,
    what: str,
) -> None:
    if not uid:
        problems.append(
            Problem(
                where,
                f"{what} has no datasourceUid. Hint: set it to the uid of your {want} datasource.",
            )
        )
        return
    target = by_uid.get(str(uid))
    if target is None:
        known = ", ".join(f"{d.uid} ({d.type})" for d in by_uid.values()) or "none"
        problems.append(
            Problem(
                where,
                (
                    f"{what} points at datasourceUid {uid!r}, which is not provisioned in this file "
                    f"(provisioned: {known}). Hint: use the exact uid of your {want} datasource."
                ),
            )
        )
    elif target.type != want:
        problems.append(
            Problem(
                where,
                (
                    f"{what} points at {uid!r}, a {target.type} datasource; it must be a {want} one. "
                    f"Hint: use the uid of your {want} datasource."
                ),
            )
        )


def validate_datasources(
    path: str | Path | Mapping[str, Any],
    *,
    require_types: Sequence[str] = (),
    require_uids: Mapping[str, str] | None = None,
) -> list[Problem]:
    """Every problem Grafana 10.2 would have (or silently make) with a datasource file.

    Args:
        path: the YAML file (or its parsed document).
        require_types: datasource types that must be present (exercise 01: all four).
        require_uids: ``{type: uid}`` the exercise fixes (``{"prometheus": "prometheus", ...}``).

    Returns:
        The problems, each naming the datasource and field; empty when the file is good.
    """
    document, name = _read_yaml(path, "the datasource provisioning file")
    problems: list[Problem] = []
    if not isinstance(document, Mapping):
        return [Problem(name, "is not a YAML mapping. Hint: start with `apiVersion: 1`.")]
    if document.get("apiVersion") != 1:
        problems.append(Problem("apiVersion", f"is {document.get('apiVersion')!r}, must be 1."))
    items = document.get("datasources")
    if not isinstance(items, list) or not items:
        problems.append(
            Problem(
                "datasources",
                "is missing or empty. Hint: list one entry per "
                "datasource (name, type, uid, url, access).",
            )
        )
        return problems
    seen_uids: dict[str, str] = {}
    seen_names: dict[str, str] = {}
    defaults: list[str] = []
    by_uid: dict[str, Datasource] = {}
    for index, item in enumerate(items):
        label = f"datasources[{index}]"
        if not isinstance(item, Mapping):
            problems.append(Problem(label, "is not a mapping."))
            continue
        ds_name = str(item.get("name") or "")
        label = f"datasources[{index}] ({ds_name or 'unnamed'})"
        for key in ("name", "type", "uid", "url"):
            if not item.get(key):
                problems.append(
                    Problem(
                        f"{label}.{key}",
                        "is missing. Hint: every datasource needs name, type, uid and url.",
                    )
                )
        ds_type = str(item.get("type") or "")
        if ds_type and ds_type not in DATASOURCE_TYPES:
            problems.append(
                Problem(
                    f"{label}.type",
                    (
                        f"{ds_type!r} is not a Grafana datasource type. Hint: use one of prometheus, loki, "
                        "tempo, alertmanager."
                    ),
                )
            )
        uid = str(item.get("uid") or "")
        if uid:
            if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid):
                problems.append(
                    Problem(f"{label}.uid", f"{uid!r} must be 1-40 letters, digits, '-' or '_'.")
                )
            if uid in seen_uids:
                problems.append(
                    Problem(
                        f"{label}.uid",
                        f"{uid!r} is also the uid of {seen_uids[uid]}; uids must be unique.",
                    )
                )
            seen_uids[uid] = label
        if ds_name:
            if ds_name in seen_names:
                problems.append(
                    Problem(
                        f"{label}.name",
                        f"{ds_name!r} is also the name of "
                        f"{seen_names[ds_name]}; names must be unique.",
                    )
                )
            seen_names[ds_name] = label
        url = str(item.get("url") or "")
        if url and not url.startswith("$"):
            parts = urlsplit(_expand(url, "", None))
            if parts.scheme not in ("http", "https") or not parts.netloc:
                problems.append(
                    Problem(
                        f"{label}.url",
                        f"{url!r} is not an http(s) URL. Hint: e.g. http://prometheus:9090",
                    )
                )
        access = item.get("access", "proxy")
        if access not in ("proxy", "direct"):
            problems.append(Problem(f"{label}.access", f"{access!r} must be proxy (or direct)."))
        if item.get("isDefault"):
            defaults.append(label)
        json_data = item.get("jsonData")
        if json_data is not None and not isinstance(json_data, Mapping):
            problems.append(Problem(f"{label}.jsonData", "must be a mapping."))
        for where, text in _walk_strings(item, label):
            _expand(text, where, problems)
        if uid:
            by_uid[uid] = Datasource(uid, ds_name, ds_type, url)
    if len(defaults) > 1:
        problems.append(
            Problem(
                "datasources",
                f"{len(defaults)} datasources are isDefault "
                f"({', '.join(defaults)}); Grafana allows one.",
            )
        )
    # Cross-links, now that every uid is known.
    for index, item in enumerate(items):
        if not isinstance(item, Mapping) or not isinstance(item.get("jsonData"), Mapping):
            continue
        label = f"datasources[{index}] ({item.get('name') or 'unnamed'}).jsonData"
        json_data = item["jsonData"]
        if item.get("type") == "loki":
            fields = json_data.get("derivedFields") or []
            if not isinstance(fields, list):
                problems.append(Problem(f"{label}.derivedFields", "must be a list."))
                fields = []
            for f_index, derived in enumerate(fields):
                where = f"{label}.derivedFields[{f_index}]"
                if not isinstance(derived, Mapping):
                    problems.append(Problem(where, "must be a mapping."))
                    continue
                if not derived.get("name"):
                    problems.append(Problem(f"{where}.name", "is missing (e.g. TraceID)."))
                regex = derived.get("matcherRegex")
                if not regex:
                    problems.append(
                        Problem(
                            f"{where}.matcherRegex", "is missing. Hint: e.g. 'trace_id=(\\w+)'."
                        )
                    )
                else:
                    issue = _regex_problem(_expand(str(regex), "", None))
                    if issue:
                        problems.append(Problem(f"{where}.matcherRegex", f"{regex!r} {issue}"))
                if "datasourceUid" in derived:
                    _link(
                        problems,
                        f"{where}.datasourceUid",
                        derived.get("datasourceUid"),
                        by_uid,
                        "tempo",
                        "the derived field",
                    )
                elif not derived.get("url"):
                    problems.append(
                        Problem(
                            where,
                            "has neither datasourceUid (an internal link to "
                            "Tempo) nor url (an external link).",
                        )
                    )
        if item.get("type") == "tempo":
            for key, want in (
                ("tracesToLogsV2", "loki"),
                ("tracesToLogs", "loki"),
                ("tracesToMetrics", "prometheus"),
                ("serviceMap", "prometheus"),
            ):
                section = json_data.get(key)
                if section is None:
                    continue
                if not isinstance(section, Mapping):
                    problems.append(Problem(f"{label}.{key}", "must be a mapping."))
                    continue
                _link(
                    problems,
                    f"{label}.{key}.datasourceUid",
                    section.get("datasourceUid"),
                    by_uid,
                    want,
                    key,
                )
    present = {d.type for d in by_uid.values()}
    for wanted in require_types:
        if wanted not in present:
            problems.append(
                Problem(
                    "datasources", f"has no {wanted} datasource. Hint: add one with type: {wanted}."
                )
            )
    for wanted_type, wanted_uid in (require_uids or {}).items():
        found = by_uid.get(wanted_uid)
        if found is None or found.type != wanted_type:
            problems.append(
                Problem(
                    "datasources",
                    (
                        f"has no {wanted_type} datasource with uid {wanted_uid!r} (the exercise's dashboards "
                        f"refer to it by that uid). Hint: set `uid: {wanted_uid}`."
                    ),
                )
            )
    return problems


def check_datasources(path: str | Path | Mapping[str, Any], **options: Any) -> list[Datasource]:
    """Validate a datasource file and return its datasources.

    Raises:
        ProvisioningError: listing every problem :func:`validate_datasources` found.
    """
    problems = validate_datasources(path, **options)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ProvisioningError(
            f"the datasource file {path} has {len(problems)} problem(s):\n"
            f"{lines}\nHint: fix each field named above.",
            problems,
        )
    return load_datasources(path)


def validate_dashboard_providers(
    path: str | Path | Mapping[str, Any], *, dashboards_dir: str | Path | None = None
) -> list[Problem]:
    """Every problem in a dashboard provider file (``provisioning/dashboards/*.yaml``).

    Args:
        path: the YAML file (or its parsed document).
        dashboards_dir: when given, the folder that must hold at least one ``*.json`` dashboard
            (the provider's ``options.path`` names it as the Grafana container sees it).
    """
    document, name = _read_yaml(path, "the dashboard provider file")
    problems: list[Problem] = []
    if not isinstance(document, Mapping):
        return [Problem(name, "is not a YAML mapping. Hint: start with `apiVersion: 1`.")]
    if document.get("apiVersion") != 1:
        problems.append(Problem("apiVersion", f"is {document.get('apiVersion')!r}, must be 1."))
    providers = document.get("providers")
    if not isinstance(providers, list) or not providers:
        problems.append(
            Problem(
                "providers",
                "is missing or empty. Hint: one provider with type: file and options.path.",
            )
        )
        return problems
    names: set[str] = set()
    for index, provider in enumerate(providers):
        label = f"providers[{index}]"
        if not isinstance(provider, Mapping):
            problems.append(Problem(label, "is not a mapping."))
            continue
        provider_name = provider.get("name")
        if not provider_name:
            problems.append(Problem(f"{label}.name", "is missing."))
        elif provider_name in names:
            problems.append(Problem(f"{label}.name", f"{provider_name!r} is used twice."))
        else:
            names.add(str(provider_name))
        if provider.get("type", "file") != "file":
            problems.append(Problem(f"{label}.type", f"{provider.get('type')!r} must be file."))
        raw_options = provider.get("options")
        options: Mapping[str, Any] = raw_options if isinstance(raw_options, Mapping) else {}
        if not options.get("path"):
            problems.append(
                Problem(
                    f"{label}.options.path",
                    "is missing. Hint: the folder holding the dashboard JSON files.",
                )
            )
        if options.get("foldersFromFilesStructure") and (
            provider.get("folder") or provider.get("folderUid")
        ):
            problems.append(
                Problem(
                    label,
                    "sets foldersFromFilesStructure together with folder/"
                    "folderUid; Grafana refuses that. Hint: leave folder "
                    "and folderUid empty.",
                )
            )
        interval = provider.get("updateIntervalSeconds", 10)
        if not isinstance(interval, int) or interval < 0:
            problems.append(
                Problem(
                    f"{label}.updateIntervalSeconds", f"{interval!r} must be a whole number ≥ 0."
                )
            )
    if dashboards_dir is not None and not list(Path(dashboards_dir).glob("*.json")):
        problems.append(
            Problem(
                "options.path",
                f"the folder {dashboards_dir} holds no *.json "
                "dashboard. Hint: save the dashboard JSON there.",
            )
        )
    return problems


# --- prometheus.yml placeholders -----------------------------------------------------------------


def placeholders(stack: Stack, *, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``${NAME_ADDR}`` (``host:port``) and ``${NAME_URL}`` values Prometheus sees.

    ``extra`` adds the student's own services, e.g. ``{"ML_SERVICE": "http://127.0.0.1:8000"}``.
    See :mod:`lab_stack.placeholders`.
    """
    return stack.placeholders(seen_from="prometheus", extra=extra)


def render_prometheus_config(
    path: str | Path, stack: Stack, *, extra: Mapping[str, str] | None = None
) -> str:
    """The text of ``path`` with its placeholders filled as Prometheus sees the stack.

    Raises:
        ConfigError: the file is missing, or names a placeholder the stack has no value for.
    """
    source = Path(path).resolve()
    if not source.is_file():
        raise ConfigError(f"{source} does not exist. Hint: check the path of your prometheus.yml.")
    return stack.fill_placeholders(
        source.read_text(), seen_from="prometheus", extra=extra, source=str(source)
    )


def apply_prometheus_config(
    stack: Stack, path: str | Path, *, extra: Mapping[str, str] | None = None
) -> Path:
    """Apply the student's ``path`` to the running Prometheus (placeholders filled, promtool first).

    Returns:
        A copy of the student's file as applied (placeholders filled), to compare the running
        configuration with (:func:`running_config_problems`); the student's file is never written.

    Raises:
        PromtoolError: promtool refused the filled-in file.
        ConfigError: a placeholder is unknown, or Prometheus refused to reload.
    """
    text = render_prometheus_config(path, stack, extra=extra)
    stack.apply_prometheus_config(path, extra=extra)
    rendered = stack.settings.config_dir / "prometheus" / "student" / Path(path).name
    rendered.parent.mkdir(parents=True, exist_ok=True)
    rendered.write_text(text)
    return rendered


# --- exercise 01 checks ----------------------------------------------------------------------------


def _scrape_summary(document: Any) -> dict[str, list[str]]:
    jobs: dict[str, list[str]] = {}
    for job in (document or {}).get("scrape_configs") or []:
        if not isinstance(job, Mapping):
            continue
        targets: list[str] = []
        for group in job.get("static_configs") or []:
            targets.extend(str(t) for t in (group or {}).get("targets") or [])
        jobs[str(job.get("job_name"))] = sorted(targets)
    return jobs


def running_config_problems(prometheus: PrometheusClient, rendered: str | Path) -> list[str]:
    """Problems when the configuration Prometheus runs (``/api/v1/status/config``) is not
    ``rendered`` (same scrape jobs and targets, same Alertmanagers, same remote_write URLs)."""
    try:
        running = yaml.safe_load(prometheus.config())
    except LabError as exc:
        return [f"could not read the running configuration: {exc}"]
    wanted = yaml.safe_load(Path(rendered).read_text())
    problems: list[str] = []
    have_jobs, want_jobs = _scrape_summary(running), _scrape_summary(wanted)
    if "lab-targets" not in want_jobs:  # the stack adds its file_sd job to every applied config
        have_jobs.pop("lab-targets", None)
    if have_jobs != want_jobs:
        problems.append(
            f"Prometheus runs scrape jobs {have_jobs}, your file has {want_jobs}. Hint: apply the "
            "file with apply_prometheus_config(stack, 'prometheus.yml') and read promtool's message."
        )

    def alertmanagers(doc: Any) -> list[str]:
        out: list[str] = []
        for am in ((doc or {}).get("alerting") or {}).get("alertmanagers") or []:
            for group in am.get("static_configs") or []:
                out.extend(str(t) for t in group.get("targets") or [])
        return sorted(out)

    def remote_writes(doc: Any) -> list[str]:
        return sorted(str(rw.get("url")) for rw in (doc or {}).get("remote_write") or [])

    if alertmanagers(running) != alertmanagers(wanted):
        problems.append(
            f"Prometheus sends alerts to {alertmanagers(running)}, your file names "
            f"{alertmanagers(wanted)}."
        )
    if remote_writes(running) != remote_writes(wanted):
        problems.append(
            f"Prometheus remote-writes to {remote_writes(running)}, your file names "
            f"{remote_writes(wanted)}."
        )
    return problems


def job_problems(
    prometheus: PrometheusClient, jobs: Iterable[str], *, timeout: float = 10.0
) -> list[str]:
    """Problems when a job in ``jobs`` has no target, or a target that is not UP.

    Targets that are not scraped yet (health ``unknown``) are waited for, up to ``timeout`` s.
    """
    wanted = list(jobs)
    deadline = time.monotonic() + timeout
    while True:
        problems, pending = _job_problems(prometheus, wanted)
        if not problems or not pending or time.monotonic() > deadline:
            return problems
        time.sleep(0.5)


def _job_problems(prometheus: PrometheusClient, jobs: Sequence[str]) -> tuple[list[str], bool]:
    try:
        targets = prometheus.targets()
    except LabError as exc:
        return [f"could not read the scrape targets: {exc}"], True
    problems = []
    pending = False
    for job in jobs:
        mine = [t for t in targets if t.job == job or t.scrape_pool == job]
        if not mine:
            pending = True
            known = sorted({t.job for t in targets})
            problems.append(
                f"job {job!r} has no scrape target (jobs found: {known}). Hint: add a "
                f"scrape_configs entry with job_name: {job}."
            )
        for target in mine:
            if not target.up:
                pending = pending or target.health == "unknown" or not target.last_error
                problems.append(
                    f"job {job!r} target {target.scrape_url} is {target.health}: "
                    f"{target.last_error or 'not scraped yet'}. Hint: check the host:port (use "
                    "the ${..._ADDR} placeholders) and the metrics path."
                )
    return problems, pending


def grafana_problems(
    grafana: GrafanaClient, datasources: Sequence[Datasource], dashboard_uids: Sequence[str] = ()
) -> list[str]:
    """Problems seen through a running Grafana: health, each datasource's test, dashboards by uid."""
    problems: list[str] = []
    try:
        health = grafana.health()
    except LabError as exc:
        return [f"Grafana does not answer /api/health: {exc}"]
    if health.get("database") != "ok":
        problems.append(f"Grafana's /api/health says database={health.get('database')!r}.")
    for source in datasources:
        try:
            result = grafana.datasource_health(source.uid)
        except LabError as exc:
            problems.append(f"datasource {source.uid!r} is not provisioned in Grafana: {exc}")
            continue
        if str(result.get("status", "")).upper() != "OK":
            problems.append(
                f"datasource {source.uid!r} fails Grafana's test: "
                f"{result.get('message')!r}. Hint: check its url."
            )
    for uid in dashboard_uids:
        try:
            grafana.dashboard(uid)
        except LabError as exc:
            problems.append(f"dashboard {uid!r} is not loaded in Grafana: {exc}")
    return problems
