"""The capstone system runner starts a student's folder against the stack and restores it after."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest

import lab_stack
from graders.capstone_system import REQUIRED_FILES, check_folder, start_system
from graders.drills import SOLUTION_NOTEBOOK, complete_folder
from graders.errors import GradingError
from lab_stack.errors import NotFound
from lab_stack.settings import Settings
from ml_service.traffic import run_traffic


@pytest.fixture(scope="module")
def solution_folder(lab_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the capstone solution notebook completes (run once in a fresh kernel)."""
    return complete_folder(
        SOLUTION_NOTEBOOK, tmp_path_factory.mktemp("capstone") / "capstone", settings=lab_settings
    )


def test_check_folder_names_what_is_missing(tmp_path: Path) -> None:
    """An incomplete folder is refused with the missing files and a hint to run the notebook."""
    (tmp_path / "observability.py").write_text("")
    with pytest.raises(GradingError, match=r"lacks alert_rules.yml, .*reference.pkl.*Hint"):
        check_folder(tmp_path)
    assert REQUIRED_FILES[0] == "observability.py"


@pytest.mark.slow
def test_runs_the_folder_and_restores_the_stack(
    stack: lab_stack.Stack, solution_folder: Path
) -> None:
    """Metrics scraped under the service label, logs in Loki, traces in Tempo, drift decisions;
    on exit targets, rules, Alertmanager config and the Pushgateway group are gone."""
    targets_before = stack.targets()
    am_before = stack.alertmanager_config_path.read_text()
    service = f"runner-{int(time.time()) % 100000}"
    with start_system(solution_folder, stack, service=service) as system:
        assert httpx.get(f"{system.gateway_url}/health").status_code == 200
        up = stack.prometheus.query_samples(f'up{{service=~"{service}|{service}-gpu"}} == 1')
        assert {s.metric["service"] for s in up} == {service, f"{service}-gpu"}
        assert (stack.rules_dir / f"capstone-{service}.yml").is_file()
        assert "for: 5s" in (stack.rules_dir / f"capstone-{service}.yml").read_text()
        truth = run_traffic(
            system.gateway_url, scenario="steady", rate=12, duration_s=6, gpu_url=system.gpu_url
        )
        assert truth.by_status == {"success": truth.sent}
        decided = stack.prometheus.wait_for(
            f'ml_drift_job_window_rows{{service="{service}"}} >= 50', timeout=20
        )
        assert decided
        assert any(d.get("drift") is False for d in system.drift_decisions())
        rate = stack.prometheus.wait_for(
            f'sum(ml_predictions_total{{service="{service}",status="success"}}) >= {truth.sent}',
            timeout=10,
        )
        assert rate
        deadline = time.monotonic() + 15
        lines: list[object] = []
        while not lines and time.monotonic() < deadline:
            data = stack.loki.query_range(system.log_selector, start=truth.started_at - 1, limit=5)
            lines = [v for s in data.get("result") or [] for v in s.get("values") or []]
            time.sleep(0.5)
        assert lines, f"no log line in Loki for {system.log_selector}"
        trace_id = truth.trace_ids[-1]
        spans = []
        while not spans and time.monotonic() < deadline + 10:
            try:
                spans = stack.tempo.trace_spans(trace_id)
            except NotFound:
                time.sleep(0.5)
        assert {s.service_name for s in spans} >= {service, f"{service}-features"}
    assert stack.targets() == targets_before
    assert not (stack.rules_dir / f"capstone-{service}.yml").exists()
    assert stack.alertmanager_config_path.read_text() == am_before
    pushed = httpx.get(f"{stack.url('pushgateway')}/metrics").text
    assert f'service="{service}"' not in pushed


@pytest.mark.slow
def test_a_broken_instrument_fails_with_its_error(
    stack: lab_stack.Stack, solution_folder: Path, tmp_path: Path
) -> None:
    """instrument() raising ends the start with one GradingError quoting it; nothing is left."""
    folder = tmp_path / "broken"
    shutil.copytree(solution_folder, folder)
    (folder / "observability.py").write_text(
        "def instrument(service, *, registry, log_path, otlp_endpoint):\n"
        "    raise NotImplementedError('students write this')\n"
    )
    targets_before = stack.targets()
    with (
        pytest.raises(GradingError, match=r"(?s)exited with code.*NotImplementedError.*Hint"),
        start_system(folder, stack, service="runner-broken"),
    ):
        pass
    assert stack.targets() == targets_before
