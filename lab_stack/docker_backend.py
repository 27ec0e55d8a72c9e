"""The docker backend: the same component specs as containers, through testcontainers.

One user network per stack, containers labelled with the stack's id (so ``down``, and the next
``up`` after a killed run, find and remove them without Ryuk), rendered configs bind-mounted
read-only, every published port bound to 127.0.0.1.

Prometheus and Grafana share the host's network namespace (listening on 127.0.0.1 only): the
services students run in their notebooks listen on the host's loopback, which a container on a
bridge network cannot reach. They reach the other containers through their loopback-published
ports; the other containers reach each other by network alias (``alertmanager`` -> ``sinks``,
``shipper`` -> ``loki``).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from lab_stack.components import SPECS, ComponentSpec, render_yaml, with_requirements
from lab_stack.errors import EngineUnavailable, LabError, StartupError
from lab_stack.readiness import ReadyCheck, wait_ready
from lab_stack.settings import HOST, Settings
from lab_stack.state import ComponentState, StackState, load_state, save_state

if TYPE_CHECKING:
    import docker

    from lab_stack.stack import Event, Stack

__all__ = [
    "HOST_NETWORK",
    "LABEL",
    "ContainerPlan",
    "DockerPlacement",
    "DockerRunner",
    "container_plan",
    "docker_down",
    "docker_up",
    "stack_id",
]

#: Label on every container and network the stack creates; its value is the stack's id.
LABEL = "io.workbook.lab.stack"
COMPONENT_LABEL = "io.workbook.lab.component"
#: Components sharing the host's network namespace (see the module docstring).
HOST_NETWORK = frozenset({"prometheus", "grafana"})

CONFIG_ROOT = "/etc/lab"
DATA_ROOT = "/var/lib/lab"
SERVICE_LOGS = "/var/log/lab-services"
#: The lab's own dashboards, provisioned into Grafana where it runs.
GRAFANA_DASHBOARDS = Path(__file__).resolve().parent / "grafana" / "dashboards"
#: Where the embedded image keeps its Python (see lab_stack/images/).
EMBEDDED_PYTHON = "/opt/venv/bin/python"


def stack_id(settings: Settings) -> str:
    """A short id of the stack under ``settings.home`` (names and labels its containers)."""
    return hashlib.sha1(str(settings.home).encode()).hexdigest()[:10]


def alias(component: str) -> str:
    """The DNS name of ``component`` on the stack's network (no underscores in host names)."""
    return component.replace("_", "-")


@dataclass
class DockerPlacement:
    """Placement of the docker backend, as seen by one component (``viewer``)."""

    host_ports: dict[str, dict[str, int]]
    viewer: str | None = None
    config_root: str = CONFIG_ROOT
    data_root: str = DATA_ROOT
    logs_dir: str = SERVICE_LOGS
    host_network: frozenset[str] = HOST_NETWORK

    @property
    def listen_host(self) -> str:
        # Inside its own network namespace a container listens everywhere; its ports are
        # published on 127.0.0.1 only. In the host's namespace it must listen on loopback.
        return HOST if self.viewer in self.host_network else "0.0.0.0"

    def view_from(self, component: str) -> DockerPlacement:
        return DockerPlacement(
            self.host_ports,
            component,
            self.config_root,
            self.data_root,
            self.logs_dir,
            self.host_network,
        )

    def has(self, component: str) -> bool:
        return component in self.host_ports

    def port(self, component: str, port: str) -> int:
        if component in self.host_network:
            return self.host_ports[component][port]
        return next(p.default for p in SPECS[component].ports if p.name == port)

    def peer(self, component: str, port: str) -> str:
        if self.viewer in self.host_network or component in self.host_network:
            return f"{HOST}:{self.host_ports[component][port]}"
        return f"{alias(component)}:{self.port(component, port)}"

    def external_url(self, component: str, port: str) -> str:
        return f"http://{HOST}:{self.host_ports[component][port]}"

    def config_dir(self, component: str) -> str:
        return f"{self.config_root}/{component}"

    def data_dir(self, component: str) -> str:
        return f"{self.data_root}/{component}"

    def service_logs_dir(self) -> str:
        return self.logs_dir


@dataclass(frozen=True)
class ContainerPlan:
    """How one component runs as a container."""

    component: str
    image: str
    entrypoint: list[str] | None
    command: list[str]
    environment: dict[str, str] = field(default_factory=dict)
    #: Extra config files (name -> text) the upstream image needs (a real Loki's loki.yml, ...).
    configs: dict[str, str] = field(default_factory=dict)
    host_network: bool = False


# --- configs of the real servers (upstream images) -------------------------------------------


def grafana_datasources(view: DockerPlacement) -> dict[str, Any]:
    """Grafana provisioning: the stack's datasources with fixed uids, cross-linked."""

    def url(component: str) -> str:
        return f"http://{view.peer(component, 'http')}"

    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "type": "prometheus",
                "uid": "prometheus",
                "url": url("prometheus"),
                "access": "proxy",
                "isDefault": True,
            },
            {
                "name": "Loki",
                "type": "loki",
                "uid": "loki",
                "url": url("loki"),
                "access": "proxy",
                "jsonData": {
                    "derivedFields": [
                        {
                            "datasourceUid": "tempo",
                            "matcherRegex": '"trace_id":"(\\w+)"',
                            "name": "TraceID",
                            "url": "$${__value.raw}",
                        }
                    ]
                },
            },
            {
                "name": "Tempo",
                "type": "tempo",
                "uid": "tempo",
                "url": url("tempo"),
                "access": "proxy",
                "jsonData": {
                    "tracesToLogsV2": {"datasourceUid": "loki", "filterByTraceID": True},
                    "tracesToMetrics": {"datasourceUid": "prometheus"},
                },
            },
            {
                "name": "Alertmanager",
                "type": "alertmanager",
                "uid": "alertmanager",
                "url": url("alertmanager"),
                "access": "proxy",
                "jsonData": {"implementation": "prometheus"},
            },
        ],
    }


_UPSTREAM_ENTRYPOINTS = {
    "prometheus": ["/bin/prometheus"],
    "alertmanager": ["/bin/alertmanager"],
    "pushgateway": ["/bin/pushgateway"],
    "node_exporter": ["/bin/node_exporter"],
    "victoriametrics": ["/victoria-metrics-prod"],
}


def container_plan(
    spec: ComponentSpec, placement: DockerPlacement, *, images: str
) -> ContainerPlan:
    """How ``spec`` runs as a container with ``images`` = ``upstream`` or ``local``."""
    view = placement.view_from(spec.name)
    host_network = spec.name in placement.host_network
    upstream = images == "upstream"
    if spec.name == "loki" and upstream:
        return ContainerPlan(
            spec.name,
            spec.image,
            ["/usr/bin/loki"],
            [f"-config.file={view.config_dir('loki')}/loki.yml"],
        )
    if spec.name == "tempo" and upstream:
        return ContainerPlan(
            spec.name,
            spec.image,
            ["/tempo"],
            [f"-config.file={view.config_dir('tempo')}/tempo.yml"],
        )
    if spec.name == "shipper" and upstream:
        return ContainerPlan(
            spec.name,
            spec.image,
            ["/usr/bin/promtail"],
            [f"-config.file={view.config_dir('shipper')}/shipper.yml"],
        )
    if spec.name == "grafana":
        return ContainerPlan(
            spec.name,
            spec.image,
            None,
            [],
            environment={
                "GF_SERVER_HTTP_ADDR": HOST,
                "GF_SERVER_HTTP_PORT": str(view.port("grafana", "http")),
                "GF_PATHS_PROVISIONING": f"{view.config_dir('grafana')}/provisioning",
                "GF_AUTH_ANONYMOUS_ENABLED": "true",
                "GF_AUTH_ANONYMOUS_ORG_ROLE": "Admin",
                "GF_ANALYTICS_REPORTING_ENABLED": "false",
                # Provisioning files (exercise 01's among them) name the datasources' URLs so.
                **{
                    f"{peer.upper()}_URL": f"http://{view.peer(peer, 'http')}"
                    for peer in ("prometheus", "loki", "tempo", "alertmanager")
                    if view.has(peer)
                },
                "LAB_DASHBOARDS_DIR": f"{view.config_dir('grafana')}/dashboards",
            },
            configs={
                "provisioning/datasources/lab.yml": render_yaml(grafana_datasources(view)),
                "provisioning/dashboards/lab.yml": render_yaml(
                    {
                        "apiVersion": 1,
                        "providers": [
                            {
                                "name": "lab",
                                "type": "file",
                                "options": {"path": f"{view.config_dir('grafana')}/dashboards"},
                            }
                        ],
                    }
                ),
                **{
                    f"dashboards/{board.name}": board.read_text()
                    for board in sorted(GRAFANA_DASHBOARDS.glob("*.json"))
                },
            },
            host_network=True,
        )
    if spec.module:
        image = spec.local_image if not upstream or spec.image == spec.local_image else spec.image
        return ContainerPlan(
            spec.name,
            image,
            [EMBEDDED_PYTHON, "-m", spec.module],
            spec.command(view),
            environment={"PYTHONUNBUFFERED": "1"},
            host_network=host_network,
        )
    image = spec.image if upstream else spec.local_image
    entrypoint = _UPSTREAM_ENTRYPOINTS.get(spec.name) if upstream else None
    return ContainerPlan(
        spec.name, image, entrypoint, spec.command(view), host_network=host_network
    )


# --- the engine ---------------------------------------------------------------------------


def _client_kwargs(settings: Settings) -> dict[str, Any]:
    """``docker.from_env`` keyword arguments (testcontainers' ``docker_client_kw``) that point
    docker-py at the engine to use, without touching this process's environment."""
    from lab_stack.engine import activate

    host = activate(settings)
    return {"environment": {"DOCKER_HOST": host}} if host else {}


def _client(settings: Settings) -> docker.DockerClient:
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(**_client_kwargs(settings))
        client.ping()
    except DockerException as exc:
        raise EngineUnavailable(
            f"no Docker engine answers ({exc}). Hint: use the native backend (`lab up --backend native`), "
            "or start an engine (`lab engine up` starts podman's Docker API)."
        ) from exc
    return client


def resolve_images(settings: Settings, client: docker.DockerClient) -> str:
    """``upstream`` or ``local``: ``auto`` means local under podman (no registry), upstream under Docker."""
    if settings.images != "auto":
        return settings.images
    components = client.version().get("Components", [])
    podman = any("podman" in str(c.get("Name", "")).lower() for c in components)
    return "local" if podman else "upstream"


class DockerRunner:
    """Liveness and stopping of the stack's containers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._docker: docker.DockerClient | None = None

    def is_alive(self, record: ComponentState) -> bool:
        from docker.errors import DockerException

        if not record.container:
            return False
        try:
            if self._docker is None:
                self._docker = _client(self.settings)
            container = self._docker.containers.get(record.container)
            return bool(container.status == "running")
        except (DockerException, LabError):
            return False

    def death_reason(self, record: ComponentState) -> str | None:
        return None if self.is_alive(record) else f"container {record.container} is not running"


def _remove_labelled(
    client: docker.DockerClient, sid: str, *, keep: set[str] | None = None
) -> list[str]:
    """Remove the stack's containers (except ``keep`` ids) and, when none is kept, its networks."""
    removed = []
    for container in client.containers.list(all=True, filters={"label": f"{LABEL}={sid}"}):
        if keep and container.id in keep:
            continue
        removed.append(container.labels.get(COMPONENT_LABEL, container.name))
        container.remove(force=True, v=True)
    if not keep:
        for network in client.networks.list(filters={"label": f"{LABEL}={sid}"}):
            network.remove()
    return removed


def _check_images(client: docker.DockerClient, plans: Sequence[ContainerPlan], images: str) -> None:
    from docker.errors import ImageNotFound

    missing = []
    for plan in plans:
        try:
            client.images.get(plan.image)
        except ImageNotFound:
            if plan.image.startswith("localhost/"):
                missing.append(plan.image)
    if missing:
        raise LabError(
            f"image(s) {', '.join(sorted(set(missing)))} are not built (LAB_IMAGES={images}). "
            "Hint: run `lab images build` (builds them locally, pulls nothing)."
        )


def docker_up(
    *,
    settings: Settings,
    components: Sequence[str] | None,
    free_ports: bool,
    on_event: Event,
) -> Stack:
    """Start the stack's containers (what is down), wait for readiness; see :func:`lab_stack.up`."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network

    from lab_stack.stack import (
        Stack,
        _assign_ports,
        _default_components,
        _locked,
        _render_configs,
        _urls,
    )

    client = _client(settings)
    images = resolve_images(settings, client)
    names = with_requirements(tuple(components)) if components else _default_components()
    sid = stack_id(settings)
    runner = DockerRunner(settings)
    with _locked(settings.home):
        state = load_state(settings.state_file) or StackState(
            backend="docker", home=str(settings.home), stack_id=sid
        )
        if state.backend != "docker":
            raise LabError(
                f"a {state.backend} stack is recorded in {settings.state_file}. Hint: `lab down` first."
            )
        alive = {n for n in names if n in state.components and runner.is_alive(state.components[n])}
        keep = {state.components[n].container for n in alive if state.components[n].container}
        _remove_labelled(
            client, sid, keep={k for k in keep if k} or {"-"}
        )  # leftovers of a killed run
        ports = _assign_ports(state, names, alive, free_ports=free_ports)
        for name in names:
            record = state.components.setdefault(
                name, ComponentState(name=name, ports=ports[name], urls={})
            )
            record.ports = ports[name]
            record.urls = _urls(SPECS[name], ports[name])
        placement = DockerPlacement(ports)
        plans = {n: container_plan(SPECS[n], placement, images=images) for n in names}
        _check_images(client, list(plans.values()), images)
        _render_configs(settings, state, placement, only=names)
        for plan in plans.values():
            for filename, text in plan.configs.items():
                target = settings.config_dir / plan.component / filename
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
        (settings.logs_dir / "services").mkdir(parents=True, exist_ok=True)

        network_name = state.network
        existing = client.networks.list(names=[network_name]) if network_name else []
        if not existing:
            network = Network(
                docker_client_kw=_client_kwargs(settings),
                docker_network_kw={"labels": {LABEL: sid}},
            )
            network.name = f"lab-{sid}"
            network.create()
            state.network = network.name
        else:
            network = Network(docker_client_kw=_client_kwargs(settings))
            network.name = existing[0].name
        to_start = []
        for name in names:
            if name in alive:
                on_event(name, "running", None)
                continue
            on_event(name, "starting", None)
            record = state.components[name]
            if record.container:
                _remove_container(client, record.container)
            to_start.append(name)

        def start(name: str) -> str:
            container = _container(
                DockerContainer, plans[name], settings, network, sid, ports[name]
            )
            container.start()
            return str(container.get_wrapped_container().id)

        # Creating a container costs the engine about a second; start them side by side.
        with ThreadPoolExecutor(max_workers=max(1, len(to_start))) as pool:
            ids = dict(zip(to_start, pool.map(start, to_start), strict=True))
        checks = []
        for name in to_start:
            record = state.components[name]
            record.container = ids[name]
            record.pid = None
            record.log = str(settings.logs_dir / f"{name}.log")
            spec = SPECS[name]
            checks.append(
                ReadyCheck(
                    name=name,
                    url=f"http://{HOST}:{ports[name][spec.main_port.name]}{spec.ready_path}",
                    dead=lambda r=record: runner.death_reason(r),  # type: ignore[misc]
                    hint="read the container's log with `lab logs NAME`",
                )
            )
        state.backend = "docker"
        state.stack_id = sid
        save_state(settings.state_file, state)
        try:
            wait_ready(
                checks,
                timeout=settings.startup_timeout,
                on_ready=lambda n, s: on_event(n, "ready", s),
            )
        except StartupError as exc:
            for check in checks:
                _dump_logs(client, state.components[check.name], settings)
            exc.add_note(f"container logs were written to {settings.logs_dir}")
            raise
        return Stack(settings, state)


def _container(
    factory: Any,
    plan: ContainerPlan,
    settings: Settings,
    network: Any,
    sid: str,
    host_ports: dict[str, int],
) -> Any:
    spec = SPECS[plan.component]
    data = settings.data_dir / plan.component
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o777)  # upstream images run as unprivileged users (nobody, 10001, ...)
    container = factory(plan.image, docker_client_kw=_client_kwargs(settings))
    if plan.command:
        container.with_command(plan.command)
    for key, value in plan.environment.items():
        container.with_env(key, value)
    container.with_name(f"lab-{sid}-{alias(plan.component)}")
    container.with_volume_mapping(
        str(settings.config_dir / plan.component), f"{CONFIG_ROOT}/{plan.component}", "ro"
    )
    container.with_volume_mapping(str(data), f"{DATA_ROOT}/{plan.component}", "rw")
    if plan.component == "shipper":
        container.with_volume_mapping(str(settings.logs_dir / "services"), SERVICE_LOGS, "ro")
    kwargs: dict[str, Any] = {"labels": {LABEL: sid, COMPONENT_LABEL: plan.component}}
    if plan.entrypoint is not None:
        kwargs["entrypoint"] = plan.entrypoint
    if plan.host_network:
        kwargs["network_mode"] = "host"
    else:
        container.with_network(network).with_network_aliases(alias(plan.component))
        for port in spec.ports:
            # Published on loopback only: testcontainers' with_bind_ports cannot say 127.0.0.1.
            container.ports[f"{port.default}/tcp"] = (HOST, host_ports[port.name])
    container.with_kwargs(**kwargs)
    return container


def _remove_container(client: docker.DockerClient, container_id: str) -> None:
    from docker.errors import NotFound

    with contextlib.suppress(NotFound):
        client.containers.get(container_id).remove(force=True, v=True)


def _dump_logs(client: docker.DockerClient, record: ComponentState, settings: Settings) -> None:
    from docker.errors import DockerException

    if not record.container:
        return
    try:
        logs = client.containers.get(record.container).logs(timestamps=False)
    except DockerException:
        return
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    (settings.logs_dir / f"{record.name}.log").write_bytes(logs)


def docker_down(*, settings: Settings, state: StackState) -> list[str]:
    """Remove every container and network of the stack; return the components removed."""
    client = _client(settings)
    for record in state.components.values():
        _dump_logs(client, record, settings)
    removed = _remove_labelled(client, state.stack_id or stack_id(settings))
    settings.state_file.unlink(missing_ok=True)
    return removed


def wait_removed(settings: Settings, *, timeout: float = 10.0) -> None:
    """Wait until no container of the stack is left (the engine removes asynchronously)."""
    client = _client(settings)
    sid = stack_id(settings)
    deadline = time.monotonic() + timeout
    while client.containers.list(all=True, filters={"label": f"{LABEL}={sid}"}):
        if time.monotonic() > deadline:
            raise LabError(f"containers of stack {sid} are still there after {timeout} s.")
        time.sleep(0.2)


# --- docker-compose.yml -------------------------------------------------------------------

COMPOSE_DIR = Path(__file__).resolve().parent / "compose"


def render_compose(components: Sequence[str] | None = None) -> dict[str, str]:
    """The committed compose bundle (file name -> text): ``docker-compose.yml`` and config files.

    Rendered from the same specs as both backends, with the upstream images and default ports.
    """
    from lab_stack.components import prometheus_config
    from lab_stack.stack import _default_components

    names = (
        tuple(components)
        if components
        else (*tuple(n for n in _default_components() if n != "grafana"), "grafana")
    )
    ports = {n: {p.name: p.default for p in SPECS[n].ports} for n in names}
    placement = DockerPlacement(ports)
    files: dict[str, str] = {}
    services: dict[str, Any] = {}
    for name in names:
        spec = SPECS[name]
        plan = container_plan(spec, placement, images="upstream")
        view = placement.view_from(name)
        configs = dict(spec.configs(view))
        if name == "prometheus":
            configs["prometheus.yml"] = render_yaml(
                prometheus_config(
                    view, components=names, scrape_interval="5s", evaluation_interval="5s"
                )
            )
            configs["rules/.keep"] = ""
            configs["file_sd/.keep"] = ""
        configs.update(plan.configs)
        if not configs:
            configs[".keep"] = ""
        for filename, text in configs.items():
            files[f"config/{name}/{filename}"] = text
        service: dict[str, Any] = {"image": plan.image}
        if plan.entrypoint is not None:
            service["entrypoint"] = plan.entrypoint
        if plan.command:
            service["command"] = plan.command
        if plan.environment:
            service["environment"] = dict(plan.environment)
        volumes = [
            f"./config/{name}:{CONFIG_ROOT}/{name}:ro",
            f"{alias(name)}-data:{DATA_ROOT}/{name}",
        ]
        if name == "shipper":
            volumes.append(f"./service-logs:{SERVICE_LOGS}:ro")
        service["volumes"] = volumes
        if plan.host_network:
            service["network_mode"] = "host"
        else:
            service["networks"] = {"lab": {"aliases": [alias(name)]}}
            service["ports"] = [f"{HOST}:{p.default}:{p.default}" for p in spec.ports]
        if name in ("gpu", "sinks"):
            service["build"] = {
                "context": "../..",
                "dockerfile": "lab_stack/images/embedded.Dockerfile",
            }
        service["restart"] = "unless-stopped"
        services[alias(name)] = service
    compose = {
        "name": "ml-observability-workbook",
        "services": services,
        "networks": {"lab": {}},
        "volumes": {f"{alias(n)}-data": {} for n in names},
    }
    header = (
        "# Rendered by `python -m lab_stack.docker_backend` from lab_stack/components.py; do not edit.\n"
        "# docker compose -f lab_stack/compose/docker-compose.yml up -d\n"
    )
    files["docker-compose.yml"] = header + yaml.safe_dump(compose, sort_keys=False)
    files["service-logs/.keep"] = ""
    return files


def write_compose(directory: Path = COMPOSE_DIR) -> list[Path]:
    """Write the compose bundle under ``directory``; return the files written."""
    written = []
    for name, text in render_compose().items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover
    for path in write_compose():
        print(path)  # noqa: T201 - a developer command
