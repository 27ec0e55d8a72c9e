"""The docker backend: rendered specs and compose file here, and real containers through
podman's Docker API (or Docker) wherever an engine answers."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import psutil
import pytest
from click.testing import CliRunner

import lab_stack
from lab_stack.cli import main
from lab_stack.components import SPECS
from lab_stack.docker_backend import (
    COMPOSE_DIR,
    LABEL,
    DockerPlacement,
    _client,
    container_plan,
    render_compose,
    stack_id,
)
from lab_stack.engine import Engine
from lab_stack.errors import BackendError, EngineUnavailable
from lab_stack.settings import Settings
from tests.lab_stack.helpers import eventually, is_loopback, listening_addresses


def _placement() -> DockerPlacement:
    return DockerPlacement(
        {n: {p.name: 40000 + i for i, p in enumerate(s.ports)} for n, s in SPECS.items()}
    )


def test_upstream_plans_use_the_modules_pinned_images() -> None:
    """With LAB_IMAGES=upstream each component runs the module's pinned image."""
    images = {n: container_plan(SPECS[n], _placement(), images="upstream").image for n in SPECS}
    assert images["prometheus"] == "prom/prometheus:v2.48.0"
    assert images["alertmanager"] == "prom/alertmanager:v0.26.0"
    assert images["loki"] == "grafana/loki:2.9.3"
    assert images["tempo"] == "grafana/tempo:2.3.1"
    assert images["shipper"] == "grafana/promtail:2.9.3"
    assert images["grafana"] == "grafana/grafana:10.2.2"


def test_local_plans_use_images_built_here() -> None:
    """With LAB_IMAGES=local every image is a localhost/ one that `lab images build` makes."""
    for name in SPECS:
        if name == "grafana":
            continue
        assert container_plan(SPECS[name], _placement(), images="local").image.startswith(
            "localhost/lab/"
        )


def test_containers_reach_each_other_by_alias_and_prometheus_shares_the_hosts_loopback() -> None:
    """Alertmanager names the sinks and the shipper names Loki by alias; Prometheus listens on
    127.0.0.1 in the host's namespace (so it can scrape the student's services there)."""
    placement = _placement()
    am = container_plan(SPECS["alertmanager"], placement, images="local")
    assert "--web.listen-address=0.0.0.0:9093" in am.command
    from lab_stack.components import alertmanager_config, shipper_config

    assert "http://sinks:9097/" in str(alertmanager_config(placement.view_from("alertmanager")))
    assert "http://loki:3100/" in str(shipper_config(placement.view_from("shipper")))
    prom = container_plan(SPECS["prometheus"], placement, images="local")
    assert prom.host_network
    assert (
        f"--web.listen-address=127.0.0.1:{placement.host_ports['prometheus']['http']}"
        in prom.command
    )


def test_committed_compose_file_is_up_to_date() -> None:
    """lab_stack/compose/ is what the specs render; regenerate with `python -m lab_stack.docker_backend`."""
    rendered = render_compose()
    on_disk = {
        str(p.relative_to(COMPOSE_DIR)): p.read_text()
        for p in COMPOSE_DIR.rglob("*")
        if p.is_file()
    }
    assert rendered == on_disk, (
        "stale: run `python -m lab_stack.docker_backend` and commit lab_stack/compose/"
    )
    compose = rendered["docker-compose.yml"]
    for name, spec in SPECS.items():
        if name != "prometheus" and name != "grafana":
            assert f"127.0.0.1:{spec.main_port.default}:{spec.main_port.default}" in compose, name


def test_docker_without_an_engine_fails_saying_so_and_suggests_native(tmp_path: Path) -> None:
    """--backend docker with no engine exits non-zero, says no engine answers, suggests native."""
    env = {
        "DOCKER_HOST": f"unix://{tmp_path}/no-such.sock",
        "LAB_HOME": str(tmp_path / "home"),
        "LAB_ENGINE_DIR": str(tmp_path / "engine"),
    }
    result = CliRunner().invoke(main, ["up", "--backend", "docker"], env=env)
    assert result.exit_code == 1
    assert "no Docker engine answers" in result.output
    assert "native" in result.output
    with pytest.raises(EngineUnavailable, match="native"):
        lab_stack.up(settings=Settings.from_env(env).with_(backend="docker"))


def test_image_build_without_network_says_so(tmp_path: Path) -> None:
    """A base-image build that cannot reach Debian's mirror fails with a message saying so."""
    import shutil

    if shutil.which("debootstrap") is None and not Path("/usr/sbin/debootstrap").exists():
        pytest.skip("needs debootstrap (installed by `make setup`)")
    from lab_stack.images import build_base_image

    settings = Settings.from_env().with_(engine_dir=tmp_path / "engine")
    with pytest.raises(BackendError, match=r"(?s)could not reach the package registries.*Hint:"):
        build_base_image(settings, force=True, mirror="http://127.0.0.1:9/debian")


# --- live containers -------------------------------------------------------------------


@pytest.mark.slow
def test_containers_resolve_each_other_by_alias(docker_stack: lab_stack.Stack) -> None:
    """Inside the stack's network the Loki container resolves `sinks` and `alertmanager` by name."""
    client = _client(docker_stack.settings)
    loki = client.containers.get(docker_stack.state.components["loki"].container)
    code, output = loki.exec_run(
        [
            "python",
            "-c",
            "import socket; print(socket.gethostbyname('sinks'), socket.gethostbyname('alertmanager'))",
        ]
    )
    assert code == 0, output
    assert len(output.decode().split()) == 2


@pytest.mark.slow
def test_shipper_reaches_loki_by_alias(docker_stack: lab_stack.Stack) -> None:
    """A line written to the services' log folder reaches Loki through the shipper container."""
    marker = f"docker-shipper-{time.time_ns()}"
    log = docker_stack.service_logs_dir / "probe.log"
    with log.open("a") as handle:
        handle.write(f'{{"event": "{marker}"}}\n')

    def found() -> list[object]:
        r = httpx.get(
            f"{docker_stack.url('loki')}/loki/api/v1/query_range",
            params={"query": f'{{job="services"}} |= "{marker}"', "since": "5m"},
        )
        return r.json()["data"]["result"]  # type: ignore[no-any-return]

    assert eventually(found, timeout=20, what="the probe line in Loki")


@pytest.mark.slow
def test_no_container_port_is_published_beyond_loopback(docker_stack: lab_stack.Stack) -> None:
    """Every published port is bound to 127.0.0.1; host-network containers listen on loopback only."""
    client = _client(docker_stack.settings)
    sid = stack_id(docker_stack.settings)
    containers = client.containers.list(filters={"label": f"{LABEL}={sid}"})
    assert len(containers) == len(docker_stack.components)
    for container in containers:
        bindings = container.attrs["HostConfig"].get("PortBindings") or {}
        for port, hosts in bindings.items():
            for host in hosts or []:
                assert host["HostIp"] == "127.0.0.1", (container.name, port, host)
        if container.attrs["HostConfig"].get("NetworkMode") == "host":
            pid = container.attrs["State"]["Pid"]
            pids = {pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))}
            sockets = listening_addresses(pids)
            assert sockets, container.name
            assert all(is_loopback(ip) for _, ip, _ in sockets), (container.name, sockets)


@pytest.mark.slow
def test_docker_up_is_idempotent_restarts_a_killed_container_and_down_leaves_nothing(
    tmp_path: Path,
) -> None:
    """up twice keeps the containers; a killed one is restarted with its data; down removes all."""
    settings = Settings.from_env().with_(home=tmp_path / "lab", backend="docker")
    from tests.conftest_helpers import docker_reason

    reason = docker_reason(settings)
    if reason:
        pytest.skip(f"needs a container engine: {reason}")
    try:
        first = lab_stack.up(
            settings=settings, components=["prometheus", "node_exporter"], free_ports=True
        )
        ids = {n: c.container for n, c in first.state.components.items()}
        again = lab_stack.up(
            settings=settings, components=["prometheus", "node_exporter"], free_ports=True
        )
        assert {n: c.container for n, c in again.state.components.items()} == ids
        url = first.url("prometheus")
        eventually(
            lambda: httpx.get(
                f"{url}/api/v1/query", params={"query": "count_over_time(up[1m]) > 3"}
            ).json()["data"]["result"],
            what="a few scrapes",
        )
        before = time.time()
        client = _client(settings)
        client.containers.get(ids["prometheus"]).kill(signal="SIGKILL")
        restarted = lab_stack.up(
            settings=settings, components=["prometheus", "node_exporter"], free_ports=True
        )
        assert restarted.state.components["prometheus"].container != ids["prometheus"]
        assert restarted.url("prometheus") == url
        result = httpx.get(
            f"{url}/api/v1/query",
            params={"query": 'count_over_time(up{job="node"}[5m])', "time": before},
        ).json()["data"]["result"]
        assert result and float(result[0]["value"][1]) >= 3, result
    finally:
        lab_stack.down(settings=settings)
    client = _client(settings)
    sid = stack_id(settings)
    assert client.containers.list(all=True, filters={"label": f"{LABEL}={sid}"}) == []
    assert client.networks.list(filters={"label": f"{LABEL}={sid}"}) == []


@pytest.mark.slow
def test_leftovers_of_a_killed_engine_are_cleaned_on_the_next_up(tmp_path: Path) -> None:
    """With the engine's API killed (-9), down cannot reach it; the next up removes what was left.

    The test runs its own podman service (its own socket), so other tests keep theirs.
    """
    import shutil

    if shutil.which("podman") is None:
        pytest.skip("needs a container engine: podman is not installed (run `make setup`)")
    settings = Settings.from_env({}).with_(
        home=tmp_path / "lab", backend="docker", engine_dir=tmp_path / "engine"
    )
    engine = Engine(settings)
    engine.up()
    try:
        lab_stack.up(settings=settings, components=["node_exporter"], free_ports=True)
        pid = int(engine.pid_file.read_text())
        os.kill(pid, signal.SIGKILL)
        eventually(lambda: not engine.answers(), timeout=5, what="the engine to stop answering")
        with pytest.raises(EngineUnavailable):
            lab_stack.down(settings=settings)
        assert settings.state_file.exists(), "down without an engine must keep the record"
        engine.up()
        # The next up finds the old container (or its remains) and starts a clean stack.
        stack = lab_stack.up(settings=settings, components=["node_exporter"], free_ports=True)
        client = _client(settings)
        sid = stack_id(settings)
        containers = client.containers.list(all=True, filters={"label": f"{LABEL}={sid}"})
        assert [c.id for c in containers] == [stack.state.components["node_exporter"].container]
    finally:
        engine.up()
        lab_stack.down(settings=settings)
        engine.down()


@pytest.mark.slow
def test_embedded_image_build_without_network_says_so(docker_settings: Settings) -> None:
    """The embedded image's pip step with no network fails naming the registries; the image stays."""
    from lab_stack.images import BASE_IMAGE, EMBEDDED_IMAGE, build_embedded_image

    client = _client(docker_settings)
    try:
        client.images.get(BASE_IMAGE)
        before = client.images.get(EMBEDDED_IMAGE).id
    except Exception as exc:  # docker.errors.ImageNotFound
        pytest.skip(f"needs the local images (`lab images build`): {exc}")
    with pytest.raises(BackendError, match=r"(?s)could not reach the package registries.*Hint:"):
        build_embedded_image(force=True, network="none", no_cache=True)
    assert client.images.get(EMBEDDED_IMAGE).id == before
