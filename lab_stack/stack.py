"""The :class:`Stack`: start, find and change the running observability stack.

Example:
    >>> import lab_stack
    >>> stack = lab_stack.up()                      # doctest: +SKIP
    >>> stack.url("prometheus")                     # doctest: +SKIP
    'http://127.0.0.1:9090'
    >>> stack.register_target("ml-service", "http://127.0.0.1:8000/metrics")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import yaml

from lab_stack import placeholders, promtool
from lab_stack.components import (
    SPECS,
    ComponentSpec,
    Placement,
    component_names,
    prometheus_config,
    render_yaml,
    with_requirements,
)
from lab_stack.errors import ConfigError, LabError, NotRunning, StartupError
from lab_stack.native import NativeBackend, NativePlacement
from lab_stack.ports import choose_port
from lab_stack.readiness import ReadyCheck, wait_ready
from lab_stack.settings import HOST, Settings, get_settings
from lab_stack.state import ComponentState, StackState, load_state, save_state

if TYPE_CHECKING:
    from lab_stack.attach import AttachRunner
    from lab_stack.clients import (
        AlertmanagerClient,
        LokiClient,
        PrometheusClient,
        SinksClient,
        TempoClient,
    )
    from lab_stack.docker_backend import DockerRunner

__all__ = ["ComponentStatus", "Event", "Stack", "connect", "down", "up"]

#: Progress callback: (component, what happened, seconds or None).
Event = Callable[[str, str, float | None], None]


def _no_events(component: str, what: str, seconds: float | None) -> None:
    return None


@dataclass(frozen=True)
class ComponentStatus:
    """One line of ``lab status``."""

    name: str
    title: str
    state: str  # ready | running | stopped
    url: str
    pid: int | None
    ports: dict[str, int]


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    """Serialise changes to one stack (two terminals running `lab up` at once)."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _file_sd_locked(path: Path) -> Iterator[None]:
    """Serialise read-modify-writes of one file_sd file (kernels graded at once on one stack)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A dot-file beside it: Prometheus's file_sd glob (*.json) never reads it.
    with open(path.parent / f".{path.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_if_changed(path: Path, text: str) -> bool:
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)
    return True


def _default_components() -> tuple[str, ...]:
    names = list(component_names())
    grafana = SPECS["grafana"].binary
    if grafana is not None and grafana.find():
        names.append("grafana")
    return tuple(names)


class Stack:
    """A handle on a running (or just started) lab stack.

    Get one with :func:`up` (start what is down) or :func:`connect` (find a running one).
    """

    def __init__(self, settings: Settings, state: StackState) -> None:
        self.settings = settings
        self.state = state

    # --- where things are -----------------------------------------------------------------
    def url(self, name: str) -> str:
        """The URL of ``name`` (``prometheus``, ``loki``, ``tempo_otlp_http``, ...)."""
        urls = self.state.urls()
        try:
            return urls[name]
        except KeyError:
            raise NotRunning(
                f"the stack has no URL named {name!r}; it has {', '.join(sorted(urls))}. "
                "Hint: start the component with `lab up`, or check the name with `lab urls`."
            ) from None

    def urls(self) -> dict[str, str]:
        """Every URL of the running stack by name."""
        return self.state.urls()

    def address(self, component: str, port: str = "http", *, seen_from: str | None = None) -> str:
        """``host:port`` of ``component``'s ``port`` as ``seen_from`` reaches it (None: the host).

        For the native backend every address is on 127.0.0.1; for the docker backend a container
        reaches another by its network alias (``sinks:9097``). Configs that the stack runs for the
        student (an ``alertmanager.yml`` naming the sinks, say) need the address from the
        component's side.
        """
        if component not in self.state.components:
            raise NotRunning(
                f"the stack has no component {component!r}. Hint: `lab status` lists the components."
            )
        placement = self._placement()
        if seen_from is None:
            return f"{HOST}:{self.state.components[component].ports[port]}"
        return placement.view_from(seen_from).peer(component, port)

    def placeholders(
        self, *, seen_from: str | None = None, extra: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """Values of the ``${NAME_ADDR}``/``${NAME_URL}`` placeholders (:mod:`lab_stack.placeholders`)
        as ``seen_from`` reaches each component (None: the host); ``extra`` adds your own services.
        """
        values: dict[str, str] = {}
        for name in self.state.components:
            spec = SPECS[name]
            for port in spec.ports:
                address = self.address(name, port.name, seen_from=seen_from)
                key = name if port == spec.main_port else f"{name}_{port.name}"
                values.update(placeholders.names_for(key, f"{port.scheme or 'tcp'}://{address}"))
            if name == "sinks":
                values["SMTP_SMARTHOST"] = self.address(name, "smtp", seen_from=seen_from)
        for name, url in (extra or {}).items():
            values.update(placeholders.names_for(name, url))
        return values

    def fill_placeholders(
        self,
        text: str,
        *,
        seen_from: str | None = None,
        extra: Mapping[str, str] | None = None,
        source: str = "the file",
    ) -> str:
        """``text`` with its placeholders filled as ``seen_from`` sees the components."""
        values = self.placeholders(seen_from=seen_from, extra=extra)
        return placeholders.fill(text, values, source=source)

    @property
    def components(self) -> tuple[str, ...]:
        return tuple(self.state.components)

    def _placement(self) -> Placement:
        ports = {n: c.ports for n, c in self.state.components.items()}
        if self.state.backend == "docker":
            from lab_stack.docker_backend import DockerPlacement

            return DockerPlacement(ports)
        return NativePlacement(self.settings, ports)

    def _runner(self) -> NativeBackend | DockerRunner | AttachRunner:
        if self.state.backend == "attach":
            from lab_stack.attach import AttachRunner

            return AttachRunner(self.settings)
        if self.state.backend == "docker":
            from lab_stack.docker_backend import DockerRunner

            return DockerRunner(self.settings)
        return NativeBackend(self.settings)

    @property
    def prometheus_config_path(self) -> Path:
        return self.settings.config_dir / "prometheus" / "prometheus.yml"

    @property
    def rules_dir(self) -> Path:
        return self.settings.config_dir / "prometheus" / "rules"

    @property
    def file_sd_dir(self) -> Path:
        return self.settings.config_dir / "prometheus" / "file_sd"

    @property
    def alertmanager_config_path(self) -> Path:
        return self.settings.config_dir / "alertmanager" / "alertmanager.yml"

    @property
    def service_logs_dir(self) -> Path:
        """Where the ML services write log files for the shipper to send to Loki."""
        path = self.settings.logs_dir / "services"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # --- clients ------------------------------------------------------------------------
    @property
    def prometheus(self) -> PrometheusClient:
        from lab_stack.clients import PrometheusClient

        return PrometheusClient(self.url("prometheus"))

    @property
    def alertmanager(self) -> AlertmanagerClient:
        from lab_stack.clients import AlertmanagerClient

        return AlertmanagerClient(self.url("alertmanager"))

    @property
    def loki(self) -> LokiClient:
        from lab_stack.clients import LokiClient

        return LokiClient(self.url("loki"))

    @property
    def tempo(self) -> TempoClient:
        from lab_stack.clients import TempoClient

        return TempoClient(self.url("tempo"))

    @property
    def sinks(self) -> SinksClient:
        from lab_stack.clients import SinksClient

        return SinksClient(self.url("sinks"))

    # --- scrape targets -----------------------------------------------------------------
    def register_target(self, job: str, url: str, *, labels: dict[str, str] | None = None) -> None:
        """Have Prometheus scrape ``url`` under ``job`` (a file_sd file; picked up within ~1 s).

        Registering the same URL again replaces its labels; other URLs of the job are kept.
        """
        if not re.fullmatch(r"[A-Za-z0-9_.:-]+", job):
            raise ConfigError(
                f"job name {job!r} has characters Prometheus labels should not carry. "
                "Hint: use letters, digits, '-', '_' or '.'."
            )
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if not parts.hostname or not parts.port:
            raise ConfigError(
                f"target URL {url!r} needs a host and a port, e.g. http://127.0.0.1:8000/metrics."
            )
        target_labels = {"job": job, **(labels or {})}
        if parts.path and parts.path != "/metrics":
            target_labels["__metrics_path__"] = parts.path
        if parts.scheme == "https":
            target_labels["__scheme__"] = "https"
        address = f"{parts.hostname}:{parts.port}"
        path = self.file_sd_dir / f"{job}.json"
        with _file_sd_locked(path):
            groups = self._read_file_sd(path)
            groups = [g for g in groups if address not in g.get("targets", [])]
            groups.append({"targets": [address], "labels": target_labels})
            _write_if_changed(path, json.dumps(groups, indent=2))

    def unregister_target(self, job: str, url: str | None = None) -> None:
        """Stop scraping ``url`` (or every URL) of ``job``."""
        path = self.file_sd_dir / f"{job}.json"
        with _file_sd_locked(path):
            if url is None:
                path.unlink(missing_ok=True)
                return
            parts = urlsplit(url if "://" in url else f"http://{url}")
            address = f"{parts.hostname}:{parts.port}"
            groups = [g for g in self._read_file_sd(path) if address not in g.get("targets", [])]
            if groups:
                _write_if_changed(path, json.dumps(groups, indent=2))
            else:
                path.unlink(missing_ok=True)

    def targets(self) -> dict[str, list[dict[str, Any]]]:
        """Registered file_sd targets by job."""
        return {p.stem: self._read_file_sd(p) for p in sorted(self.file_sd_dir.glob("*.json"))}

    @staticmethod
    def _read_file_sd(path: Path) -> list[dict[str, Any]]:
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return []
        return data if isinstance(data, list) else []

    # --- configuration changes ----------------------------------------------------------
    def apply_prometheus_config(
        self, path: str | Path, *, extra: Mapping[str, str] | None = None
    ) -> None:
        """Check ``path`` with promtool, then make it the running Prometheus's configuration.

        Relative ``rule_files`` and ``file_sd_configs`` paths are resolved against ``path``'s folder;
        :meth:`placeholders` such as ``${NODE_EXPORTER_ADDR}`` are filled in as Prometheus sees the
        components (``extra`` names your own services: ``{"ML_SERVICE": url}``). The lab's
        ``lab-targets`` file_sd job is added when the file lacks it, so :meth:`register_target`
        keeps working. On any rejection the running configuration stays as it was.

        Raises:
            PromtoolError: promtool refused the file (the message carries promtool's output).
            ConfigError: Prometheus refused to reload it.
        """
        source = Path(path).resolve()
        if not source.is_file():
            raise ConfigError(
                f"{source} does not exist. Hint: check the path of your prometheus.yml."
            )
        with self._filled(source, seen_from="prometheus", extra=extra) as filled:
            promtool.check_config(filled)
            text = _absolutise_prometheus_paths(
                filled,
                host_dir=self.prometheus_config_path.parent,
                seen_dir=self._placement().view_from("prometheus").config_dir("prometheus"),
            )
        self._replace_and_reload("prometheus", self.prometheus_config_path, text)

    def apply_rules(self, paths: Sequence[str | Path], *, replace: bool = False) -> list[Path]:
        """Check rule files with promtool, copy them into the rules folder and reload Prometheus.

        Args:
            paths: rule files (YAML with ``groups:``).
            replace: remove every previously applied rule file first.

        Returns:
            Where the files were copied.

        Raises:
            PromtoolError: a file was refused; nothing is changed then.
        """
        sources = [Path(p).resolve() for p in paths]
        for source in sources:
            if not source.is_file():
                raise ConfigError(
                    f"{source} does not exist. Hint: check the path of your rules file."
                )
        promtool.check_rules(sources)
        self.rules_dir.mkdir(parents=True, exist_ok=True)
        backup = {p: p.read_bytes() for p in self.rules_dir.glob("*.yml")}
        if replace:
            for old in backup:
                old.unlink()
        copied = []
        for source in sources:
            target = self.rules_dir / (source.stem + ".yml")
            shutil.copyfile(source, target)
            copied.append(target)
        try:
            self.reload("prometheus")
        except LabError:
            for new in copied:
                new.unlink(missing_ok=True)
            for old, content in backup.items():
                old.write_bytes(content)
            self.reload("prometheus")
            raise
        return copied

    def remove_rules(self, names: Sequence[str] | None = None) -> None:
        """Remove applied rule files (all when ``names`` is None) and reload Prometheus."""
        for file in self.rules_dir.glob("*.yml"):
            if names is None or file.stem in names or file.name in names:
                file.unlink()
        self.reload("prometheus")

    def apply_alertmanager_config(
        self, path: str | Path, *, extra: Mapping[str, str] | None = None
    ) -> None:
        """Check ``path`` with amtool, then make it the running Alertmanager's configuration.

        :meth:`placeholders` such as ``${SINKS_URL}`` and ``${SMTP_SMARTHOST}`` are filled in as
        Alertmanager sees the notification sinks (``extra`` names your own services).
        """
        source = Path(path).resolve()
        if not source.is_file():
            raise ConfigError(
                f"{source} does not exist. Hint: check the path of your alertmanager.yml."
            )
        with self._filled(source, seen_from="alertmanager", extra=extra) as filled:
            promtool.check_alertmanager_config(filled)
            text = filled.read_text()
        self._replace_and_reload("alertmanager", self.alertmanager_config_path, text)

    @contextlib.contextmanager
    def _filled(
        self, source: Path, *, seen_from: str, extra: Mapping[str, str] | None
    ) -> Iterator[Path]:
        """``source`` with placeholders filled, as a file beside it (relative paths keep working)."""
        text = source.read_text()
        filled = self.fill_placeholders(text, seen_from=seen_from, extra=extra, source=str(source))
        if filled == text:
            yield source
            return
        fd, name = tempfile.mkstemp(
            dir=source.parent, prefix=f".{source.stem}-filled-", suffix=source.suffix
        )
        with os.fdopen(fd, "w") as handle:
            handle.write(filled)
        try:
            yield Path(name)
        finally:
            Path(name).unlink(missing_ok=True)

    def _replace_and_reload(self, component: str, target: Path, text: str) -> None:
        previous = target.read_text() if target.exists() else None
        _write_if_changed(target, text)
        try:
            self.reload(component)
        except LabError:
            if previous is not None:
                _write_if_changed(target, previous)
                self.reload(component)
            raise
        record = self.state.components.get(component)
        if record is not None and not record.custom_config:
            record.custom_config = True
            save_state(self.settings.state_file, self.state)

    def reset_config(self, component: str) -> None:
        """Go back to the lab's default configuration of ``component`` (undo ``apply_*``)."""
        record = self.state.components.get(component)
        if record is not None:
            record.custom_config = False
            save_state(self.settings.state_file, self.state)
        _render_configs(self.settings, self.state, self._placement(), only=(component,))
        self.reload(component)

    def reload(self, component: str) -> None:
        """Ask ``component`` (prometheus or alertmanager) to re-read its config files."""
        url = f"{self.url(component)}/-/reload"
        try:
            response = httpx.post(url, timeout=30.0, trust_env=False)
        except httpx.HTTPError as exc:
            raise NotRunning(
                f"POST {url} failed: {exc}. Hint: is the stack up? Run `lab status`."
            ) from exc
        if response.status_code != 200:
            raise ConfigError(
                f"{component} refused to reload its configuration (HTTP {response.status_code} from "
                f"{url}): {response.text.strip()}. Hint: the previous configuration is still running."
            )

    # --- lifecycle ----------------------------------------------------------------------
    def status(self) -> list[ComponentStatus]:
        """Each component's state: ``ready``, ``running`` (alive, not answering) or ``stopped``."""
        backend = self._runner()
        rows = []
        with httpx.Client(timeout=1.0, trust_env=False) as client:
            for name, record in self.state.components.items():
                spec = SPECS[name]
                main = spec.main_port
                url = record.urls.get(next(iter(spec.urls), name), "")
                if not backend.is_alive(record):
                    state = "stopped"
                else:
                    try:
                        ok = (
                            client.get(
                                f"http://{HOST}:{record.ports[main.name]}{spec.ready_path}"
                            ).status_code
                            == 200
                        )
                    except httpx.HTTPError:
                        ok = False
                    state = "ready" if ok else "running"
                rows.append(
                    ComponentStatus(name, spec.title, state, url, record.pid, dict(record.ports))
                )
        return rows

    def down(self) -> None:
        """Stop every process of the stack and forget it."""
        down(settings=self.settings)


def _absolutise_prometheus_paths(source: Path, *, host_dir: Path, seen_dir: str) -> str:
    """The config text ready to run where Prometheus runs.

    Rule files it names (globs resolved against its folder) are copied under ``host_dir/applied-rules``
    and named as Prometheus sees that folder (``seen_dir``), so the same file works for a process and
    for a container; relative file_sd paths are made absolute.
    """
    text = source.read_text()
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:  # promtool already parsed it; be safe anyway
        raise ConfigError(f"{source} is not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        return text
    base = source.parent
    applied = host_dir / "applied-rules"
    shutil.rmtree(applied, ignore_errors=True)
    rule_files = document.get("rule_files")
    if isinstance(rule_files, list) and rule_files:
        applied.mkdir(parents=True)
        for index, pattern in enumerate(str(p) for p in rule_files):
            full = pattern if os.path.isabs(pattern) else str(base / pattern)
            for number, match in enumerate(sorted(glob.glob(full))):
                shutil.copyfile(match, applied / f"{index:02d}-{number:03d}-{Path(match).name}")
        document["rule_files"] = [f"{seen_dir}/applied-rules/*"]
    for job in document.get("scrape_configs") or []:
        for sd in job.get("file_sd_configs") or []:
            if isinstance(sd.get("files"), list):
                sd["files"] = [
                    p if os.path.isabs(str(p)) else str(base / str(p)) for p in sd["files"]
                ]
    return render_yaml(document)


def _render_configs(
    settings: Settings,
    state: StackState,
    placement: Placement,
    *,
    only: Sequence[str] | None = None,
) -> set[str]:
    """Write each component's default config files; return the components whose files changed."""
    changed: set[str] = set()
    names = tuple(state.components)
    for name in only or names:
        record = state.components.get(name)
        if record is None or record.custom_config:
            continue
        view = placement.view_from(name)
        config_dir = settings.config_dir / name
        files = dict(SPECS[name].configs(view))
        if name == "prometheus":
            (config_dir / "rules").mkdir(parents=True, exist_ok=True)
            (config_dir / "file_sd").mkdir(parents=True, exist_ok=True)
            document = prometheus_config(
                view,
                components=names,
                scrape_interval=settings.scrape_interval,
                evaluation_interval=settings.evaluation_interval,
            )
            files["prometheus.yml"] = render_yaml(document)
        for filename, text in files.items():
            if _write_if_changed(config_dir / filename, text):
                changed.add(name)
    return changed


def _assign_ports(
    state: StackState, names: Sequence[str], alive: set[str], *, free_ports: bool
) -> dict[str, dict[str, int]]:
    taken: set[int] = set()
    for name in alive:
        taken |= set(state.components[name].ports.values())
    assigned: dict[str, dict[str, int]] = {}
    for name in names:
        record = state.components.get(name)
        if name in alive and record is not None:
            assigned[name] = dict(record.ports)
            continue
        ports = {}
        for port in SPECS[name].ports:
            previous = record.ports.get(port.name) if record else None
            preferred = previous or (0 if free_ports else port.default)
            ports[port.name] = chosen = choose_port(preferred, avoid=taken)
            taken.add(chosen)
        assigned[name] = ports
    return assigned


def _urls(spec: ComponentSpec, ports: dict[str, int]) -> dict[str, str]:
    urls = {}
    for url_name, port_name in spec.urls.items():
        scheme = next(p.scheme for p in spec.ports if p.name == port_name)
        urls[url_name] = f"{scheme}://{HOST}:{ports[port_name]}"
    return urls


def up(
    *,
    settings: Settings | None = None,
    components: Sequence[str] | None = None,
    free_ports: bool = False,
    on_event: Event = _no_events,
) -> Stack:
    """Start every component that is down (restarting any that died) and wait until all are ready.

    Idempotent: what already runs is left alone.

    Args:
        settings: defaults to the ``LAB_*`` environment.
        components: a subset to run (default: every component, Grafana when installed).
        free_ports: pick free ports instead of the usual defaults (tests, parallel stacks).
        on_event: progress callback ``(component, "starting"|"ready"|"running", seconds)``.

    Raises:
        BinaryNotFound: a component's executable is missing (with the install command).
        StartupError: a component died or was not ready in time (with its last log lines).
    """
    settings = settings or get_settings()
    from lab_stack.backends import resolve_backend

    recorded = load_state(settings.state_file)
    if settings.backend == "auto" and recorded is not None:
        # A stack already runs here: `up` keeps it on its backend rather than guessing again.
        settings = settings.with_(backend=recorded.backend)
    resolved = resolve_backend(settings)
    if resolved == "attach":
        from lab_stack.attach import attach_up

        return attach_up(settings=settings, components=components, on_event=on_event)
    if resolved == "docker":
        from lab_stack.docker_backend import docker_up

        return docker_up(
            settings=settings, components=components, free_ports=free_ports, on_event=on_event
        )
    unknown = [n for n in components or () if n not in SPECS]
    if unknown:
        raise ConfigError(f"unknown component(s) {', '.join(unknown)}; known: {', '.join(SPECS)}.")
    names = with_requirements(tuple(components)) if components else _default_components()
    backend = NativeBackend(settings)
    with _locked(settings.home):
        state = load_state(settings.state_file) or StackState(
            backend="native", home=str(settings.home)
        )
        if state.backend != "native":
            raise LabError(
                f"a {state.backend} stack is recorded in {settings.state_file}. "
                "Hint: run `lab down` first, or use the same backend."
            )
        # Binaries first: a missing one should fail before anything starts.
        for name in names:
            spec = SPECS[name]
            if spec.binary is not None and not spec.module:
                spec.binary.require()
        alive = {
            n for n in names if n in state.components and backend.is_alive(state.components[n])
        }
        ports = _assign_ports(state, names, alive, free_ports=free_ports)
        for name in names:
            record = state.components.get(name)
            if record is None:
                record = ComponentState(name=name, ports=ports[name], urls={})
                state.components[name] = record
            record.ports = ports[name]
            record.urls = _urls(SPECS[name], ports[name])
        placement = NativePlacement(settings, ports)
        Path(placement.service_logs_dir()).mkdir(parents=True, exist_ok=True)
        changed = _render_configs(settings, state, placement, only=names)
        checks = []
        # The Python servers first: they take ten times as long as the Go binaries to be ready,
        # so starting them first takes their start-up off the end of the critical path.
        for name in sorted(names, key=lambda n: SPECS[n].module is None):
            record = state.components[name]
            spec = SPECS[name]
            if name in alive:
                on_event(name, "running", None)
                continue
            on_event(name, "starting", None)
            backend.start(spec, placement, record)
            save_state(settings.state_file, state)
            checks.append(
                ReadyCheck(
                    name=name,
                    url=f"http://{HOST}:{record.ports[spec.main_port.name]}{spec.ready_path}",
                    log=record.log,
                    dead=lambda r=record: backend.death_reason(r),  # type: ignore[misc]
                )
            )
        save_state(settings.state_file, state)
        stack = Stack(settings, state)
        wait_ready(
            checks, timeout=settings.startup_timeout, on_ready=lambda n, s: on_event(n, "ready", s)
        )
        # Running components whose peers moved get their new configuration.
        for name in sorted(changed & alive):
            if name in ("prometheus", "alertmanager"):
                stack.reload(name)
            elif name == "shipper":
                backend.stop(state.components[name])
                return up(
                    settings=settings, components=names, free_ports=free_ports, on_event=on_event
                )
        return stack


def connect(*, settings: Settings | None = None) -> Stack:
    """A handle on the stack that is already running under ``settings.home``.

    Raises:
        NotRunning: no stack has been started there.
    """
    settings = settings or get_settings()
    state = load_state(settings.state_file)
    if state is None or not state.components:
        raise NotRunning(
            f"no lab stack is running under {settings.home}. Hint: start it with `make up` (or `lab up`)."
        )
    return Stack(settings, state)


def down(*, settings: Settings | None = None, timeout: float = 5.0) -> list[str]:
    """Stop every component of the stack under ``settings.home``; return the names stopped."""
    settings = settings or get_settings()
    with _locked(settings.home):
        state = load_state(settings.state_file)
        if state is None:
            return []
        if state.backend == "docker":
            from lab_stack.docker_backend import docker_down

            return docker_down(settings=settings, state=state)
        backend = NativeBackend(settings)
        stopped = []
        for name, record in reversed(list(state.components.items())):
            if backend.is_alive(record):
                stopped.append(name)
            backend.stop(record, timeout=timeout)
        settings.state_file.unlink(missing_ok=True)
        return stopped


def wait_until(
    predicate: Callable[[], bool], *, timeout: float, interval: float = 0.2, what: str = ""
) -> None:
    """Poll ``predicate`` until it is true; raise :class:`StartupError` naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise StartupError(
                f"timed out after {timeout:.0f} s waiting for {what or 'a condition'}."
            )
        time.sleep(interval)
