"""The attach backend against a real native stack: find running components, start and stop none."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry, Gauge, start_http_server

import lab_stack
from lab_stack.attach import attach_up
from lab_stack.cli import main
from lab_stack.errors import StartupError
from lab_stack.ports import free_port
from lab_stack.settings import Settings
from lab_stack.state import load_state
from tests.lab_stack.helpers import eventually, stack_pids

pytestmark = pytest.mark.slow


def _ports(stack: lab_stack.Stack) -> dict[str, dict[str, int]]:
    return {name: dict(c.ports) for name, c in stack.state.components.items()}


@pytest.fixture
def attached_settings(tmp_path: Path) -> Settings:
    """Settings of the notebook side: its own LAB_HOME, the attach backend."""
    return Settings.from_env().with_(
        home=tmp_path / "attached", backend="attach", startup_timeout=15
    )


@pytest.fixture
def metrics_server() -> Iterator[str]:
    """A real /metrics endpoint on a free loopback port (a student's service)."""
    registry = CollectorRegistry()
    Gauge(
        "lab_attach_gauge", "A gauge the attached stack's Prometheus scrapes.", registry=registry
    ).set(7)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_settings_accept_the_attach_backend() -> None:
    """LAB_BACKEND=attach is a valid setting (a pod's notebook container sets it)."""
    assert Settings.from_env({"LAB_BACKEND": "attach"}).backend == "attach"


def test_attach_records_the_running_stack_and_queries_go_through(
    stack: lab_stack.Stack, attached_settings: Settings
) -> None:
    """Attaching writes a state file without PIDs; status is ready and the clients answer."""
    native_pids = stack_pids(stack.settings)
    attached = attach_up(settings=attached_settings, ports=_ports(stack))

    state = load_state(attached_settings.state_file)
    assert state is not None and state.backend == "attach"
    assert set(state.components) == set(stack.state.components)
    assert [c.pid for c in state.components.values()] == [None] * len(state.components)
    assert attached.urls() == stack.urls()
    assert [r.name for r in attached.status() if r.state != "ready"] == []

    assert (
        eventually(
            lambda: attached.prometheus.query_value('up{job="prometheus"}'),
            what="Prometheus's own up",
        )
        == 1.0
    )
    marker = uuid.uuid4().hex
    attached.loki.push_lines({"job": "attach-test"}, [f"attached {marker}"])
    lines = eventually(
        lambda: [
            v[1]
            for s in attached.loki.query_range(
                f'{{job="attach-test"}} |= "{marker}"', start=time.time() - 60, end=time.time() + 5
            )["result"]
            for v in s["values"]
        ],
        what="the pushed line in Loki",
    )
    assert lines == [f"attached {marker}"]
    assert stack_pids(stack.settings) == native_pids  # nothing was started or restarted


def test_up_and_status_use_the_attached_stack_and_down_stops_nothing(
    stack: lab_stack.Stack, attached_settings: Settings
) -> None:
    """`up` on an attached home starts no process, `lab status` reads it, `down` only forgets it."""
    attach_up(settings=attached_settings, ports=_ports(stack))
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    again = lab_stack.up(settings=attached_settings.with_(backend="auto"))
    assert again.state.backend == "attach"
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before

    env = {"LAB_HOME": str(attached_settings.home), "LAB_BACKEND": "attach"}
    result = CliRunner().invoke(main, ["status", "--json"], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["backend"] == "attach"
    assert {c["state"] for c in report["components"]} == {"ready"}

    assert lab_stack.down(settings=attached_settings) == []
    assert not attached_settings.state_file.exists()
    assert [r.name for r in stack.status() if r.state != "ready"] == []


def test_config_changes_reach_the_component_through_the_shared_folder(
    fresh_settings: Settings, attached_settings: Settings, metrics_server: str, tmp_path: Path
) -> None:
    """As in a pod (one volume at LAB_HOME), targets and rules written by the attached side are
    read by the running Prometheus after an HTTP reload."""
    running = lab_stack.up(
        settings=fresh_settings.with_(backend="native"), components=["prometheus"], free_ports=True
    )
    attached_settings.home.mkdir(parents=True)
    (attached_settings.home / "config").symlink_to(running.settings.config_dir)
    attached = attach_up(
        settings=attached_settings, components=["prometheus"], ports=_ports(running)
    )

    job = f"attached-{uuid.uuid4().hex[:8]}"
    attached.register_target(job, metrics_server)
    assert (
        eventually(
            lambda: attached.prometheus.query_value(f'lab_attach_gauge{{job="{job}"}}'),
            what="the registered target's gauge",
        )
        == 7.0
    )

    rules = tmp_path / "attached_rules.yml"
    rules.write_text(
        "groups:\n- name: attached\n  rules:\n  - record: job:lab_attach_gauge:double\n"
        "    expr: 2 * lab_attach_gauge\n"
    )
    attached.apply_rules([rules])
    loaded = [r["name"] for g in attached.prometheus.rules() for r in g["rules"]]
    assert "job:lab_attach_gauge:double" in loaded


def test_attaching_where_nothing_listens_fails_with_a_hint(attached_settings: Settings) -> None:
    """No component at the given port: a StartupError naming it and saying where to look."""
    settings = attached_settings.with_(startup_timeout=1.0)
    with pytest.raises(
        StartupError, match=r"prometheus was not ready .* Hint: .*kubectl logs POD -c prometheus"
    ):
        attach_up(
            settings=settings,
            components=["prometheus"],
            ports={"prometheus": {"http": free_port()}},
        )
    assert not settings.state_file.exists()
