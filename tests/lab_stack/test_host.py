"""The embedded components' shared host process: one process, components started and stopped alone."""

from __future__ import annotations

import importlib
import inspect
import json
import socket
import subprocess
import sys
import time

import httpx
import psutil
import pytest

import lab_stack
from lab_stack.components import SPECS
from lab_stack.embedded.host import ENTRY_POINTS, hostable
from lab_stack.native import NativeBackend
from lab_stack.settings import Settings
from tests.lab_stack.helpers import eventually, stack_pids

pytestmark = pytest.mark.slow

HOSTED = ["loki", "tempo", "sinks"]


def test_every_embedded_component_has_an_entry_point_coroutine() -> None:
    """Loki, Tempo, the shipper, the sinks and the GPU source are hostable; entry points are async."""
    assert {name for name, spec in SPECS.items() if hostable(spec.module)} == {
        "loki",
        "tempo",
        "shipper",
        "sinks",
        "gpu",
    }
    for target in ENTRY_POINTS.values():
        module, _, function = target.partition(":")
        entry = getattr(importlib.import_module(module), function)
        assert inspect.iscoroutinefunction(entry), target
        assert list(inspect.signature(entry).parameters) == ["argv", "stop"], target


def test_lab_stack_loads_the_gpu_source_by_name_only() -> None:
    """``lab_stack`` knows ``ml_service.gpu`` as a name (like ``python -m``), never as an import."""
    code = (
        "import sys, lab_stack.embedded.host, lab_stack.native, lab_stack.stack; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'ml_service'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie of this test process counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _states(stack: lab_stack.Stack) -> dict[str, str]:
    return {row.name: row.state for row in stack.status()}


def test_hosted_components_share_a_process_yet_stop_and_restart_one_at_a_time(
    fresh_settings: Settings,
) -> None:
    """Three embedded servers run in one host; one stops alone, frees its port, rejoins the host."""
    settings = fresh_settings.with_(backend="native")
    stack = lab_stack.up(settings=settings, components=HOSTED, free_ports=True)
    pids = stack_pids(settings)
    assert len({pids[name] for name in HOSTED}) == 1, pids
    assert _states(stack) == dict.fromkeys(HOSTED, "ready")

    tempo = stack.state.components["tempo"]
    NativeBackend(settings).stop(tempo)
    assert _states(stack) == {"loki": "ready", "tempo": "stopped", "sinks": "ready"}
    with socket.socket() as probe:  # its own port is released, the others keep serving
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", tempo.ports["http"]))

    again = lab_stack.up(settings=settings, components=HOSTED, free_ports=True)
    assert stack_pids(settings) == pids, "tempo rejoins the running host, nothing else restarts"
    assert _states(again) == dict.fromkeys(HOSTED, "ready")

    assert sorted(lab_stack.down(settings=settings)) == sorted(HOSTED)
    assert _gone(pids["loki"]), "the host exits with its last component"


def test_a_failing_component_ends_the_host_and_up_restarts_all_with_their_data(
    fresh_settings: Settings,
) -> None:
    """One hosted server failing stops its neighbours cleanly; `up` brings all back, data kept."""
    settings = fresh_settings.with_(backend="native")
    stack = lab_stack.up(settings=settings, components=["loki", "sinks"], free_ports=True)
    loki = stack.url("loki")
    now = str(time.time_ns())
    pushed = httpx.post(
        f"{loki}/loki/api/v1/push",
        json={"streams": [{"stream": {"job": "host-test"}, "values": [[now, "kept line"]]}]},
    )
    assert pushed.status_code == 204, pushed.text
    old_pid = stack_pids(settings)["loki"]

    host_dir = NativeBackend._host_dir(stack.state.components["loki"])
    assert host_dir is not None
    bogus = {
        "module": "lab_stack.embedded.loki",
        "argv": ["--port", "not-a-port"],
        "log": str(settings.logs_dir / "bogus.log"),
    }
    (host_dir / "want" / "bogus.json").write_text(json.dumps(bogus))
    eventually(
        lambda: _states(stack) == {"loki": "stopped", "sinks": "stopped"},
        what="both hosted components to be reported stopped",
    )
    eventually(lambda: _gone(old_pid), what="the host to exit")
    assert "bogus failed" in (settings.logs_dir / "bogus.log").read_text()

    restarted = lab_stack.up(settings=settings, components=["loki", "sinks"], free_ports=True)
    assert stack_pids(settings)["loki"] != old_pid
    assert _states(restarted) == {"loki": "ready", "sinks": "ready"}
    assert restarted.url("loki") == loki
    result = httpx.get(
        f"{loki}/loki/api/v1/query_range",
        params={"query": '{job="host-test"}', "start": int(now) - 10**9, "limit": 10},
    ).json()["data"]["result"]
    assert [v[1] for stream in result for v in stream["values"]] == ["kept line"]
