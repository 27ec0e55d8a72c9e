"""The running stack, end to end with real processes: targets, alerts, config changes."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, start_http_server

import lab_stack
from lab_stack.errors import PromtoolError
from tests.lab_stack.helpers import eventually

pytestmark = pytest.mark.slow


def _query(stack: lab_stack.Stack, expr: str) -> list[dict[str, object]]:
    response = httpx.get(f"{stack.url('prometheus')}/api/v1/query", params={"query": expr})
    response.raise_for_status()
    result: list[dict[str, object]] = response.json()["data"]["result"]
    return result


def _notifications(stack: lab_stack.Stack, receiver: str) -> list[dict[str, object]]:
    response = httpx.get(f"{stack.url('sinks')}/api/notifications", params={"receiver": receiver})
    response.raise_for_status()
    notes: list[dict[str, object]] = response.json()["notifications"]
    return notes


@pytest.fixture
def metrics_server() -> Iterator[str]:
    """A real /metrics endpoint on a free loopback port."""
    registry = CollectorRegistry()
    Gauge("lab_test_gauge", "A gauge for the file_sd test.", registry=registry).set(42)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_every_component_is_ready(any_stack: lab_stack.Stack) -> None:
    """After up, every component answers its readiness URL and has a URL in the state."""
    stack = any_stack
    rows = stack.status()
    assert {r.name for r in rows} >= {
        "prometheus",
        "alertmanager",
        "pushgateway",
        "node_exporter",
        "victoriametrics",
        "loki",
        "tempo",
        "shipper",
        "sinks",
        "gpu",
    }
    assert [r.name for r in rows if r.state != "ready"] == []


def test_registered_target_is_up_within_seconds(
    any_stack: lab_stack.Stack, metrics_server: str
) -> None:
    """A target registered through file_sd is scraped and UP within a few seconds."""
    stack = any_stack
    job = f"file-sd-{uuid.uuid4().hex[:8]}"
    stack.register_target(job, metrics_server, labels={"team": "ml"})
    try:
        result = eventually(
            lambda: _query(stack, f'up{{job="{job}"}} == 1'), timeout=10, what=f"{job} UP"
        )
        assert result[0]["metric"]["team"] == "ml"  # type: ignore[index]
        assert eventually(lambda: _query(stack, f'lab_test_gauge{{job="{job}"}}'), what="the gauge")
    finally:
        stack.unregister_target(job)


def test_default_jobs_are_scraped(any_stack: lab_stack.Stack) -> None:
    """Prometheus scrapes every component of the stack (node_exporter, sinks, GPU source, ...)."""
    stack = any_stack
    expected = {
        "prometheus",
        "alertmanager",
        "pushgateway",
        "node",
        "victoriametrics",
        "sinks",
        "dcgm",
    }
    result = eventually(
        lambda: (
            (jobs := {r["metric"]["job"] for r in _query(stack, "up == 1")}) >= expected and jobs
        ),  # type: ignore[index]
        timeout=15,
        what="every default job UP",
    )
    assert expected <= set(result)


def test_remote_write_reaches_the_long_term_store(any_stack: lab_stack.Stack) -> None:
    """Samples Prometheus scrapes arrive in VictoriaMetrics through remote_write."""
    stack = any_stack

    def in_vm() -> list[object]:
        r = httpx.get(
            f"{stack.url('victoriametrics')}/api/v1/query", params={"query": 'up{job="prometheus"}'}
        )
        return r.json()["data"]["result"]  # type: ignore[no-any-return]

    assert eventually(in_vm, timeout=20, what="up in VictoriaMetrics")


def test_firing_alert_reaches_the_webhook_sink_and_then_resolves(
    any_stack: lab_stack.Stack, tmp_path: Path
) -> None:
    """A rule that fires reaches the sink through Alertmanager; when it stops, 'resolved' arrives."""
    stack = any_stack
    name = f"LabAlwaysFiring{uuid.uuid4().hex[:6]}"
    registry = CollectorRegistry()
    switch = Gauge(
        "lab_test_switch", "1 while the test alert should fire.", ["alert"], registry=registry
    )
    switch.labels(alert=name).set(1)
    push_to_gateway(
        stack.url("pushgateway").removeprefix("http://"), job="lab-test", registry=registry
    )
    rules = tmp_path / "always.yml"
    rules.write_text(
        textwrap.dedent(f"""
        groups:
          - name: lab-test
            rules:
              - alert: {name}
                expr: lab_test_switch{{alert="{name}"}} == 1
                labels: {{severity: warning}}
                annotations: {{summary: "test alert"}}
    """)
    )
    stack.apply_rules([rules])
    try:

        def arrived(status: str) -> list[dict[str, object]]:
            return [
                n
                for n in _notifications(stack, "lab-webhook")
                if n["payload"]["status"] == status  # type: ignore[index]
                and any(a["labels"]["alertname"] == name for a in n["payload"]["alerts"])  # type: ignore[index]
            ]

        firing = eventually(
            lambda: arrived("firing"), timeout=30, what=f"{name} firing at the sink"
        )
        assert firing[0]["kind"] == "webhook"
        switch.labels(alert=name).set(0)
        push_to_gateway(
            stack.url("pushgateway").removeprefix("http://"), job="lab-test", registry=registry
        )
        eventually(lambda: arrived("resolved"), timeout=30, what=f"{name} resolved at the sink")
    finally:
        stack.remove_rules(["always"])


def test_bad_prometheus_config_is_refused_and_the_old_one_keeps_serving(
    any_stack: lab_stack.Stack, tmp_path: Path
) -> None:
    """A broken prometheus.yml is refused with promtool's message; the running config is unchanged."""
    stack = any_stack
    before = httpx.get(f"{stack.url('prometheus')}/api/v1/status/config").json()["data"]["yaml"]
    bad = tmp_path / "prometheus.yml"
    bad.write_text(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: x\n    static_configs: [{targets: ['127.0.0.1:1']}]\n    scrape_interval: often\n"
    )
    with pytest.raises(PromtoolError, match=r"(?s)rejected.*often.*Hint:"):
        stack.apply_prometheus_config(bad)
    after = httpx.get(f"{stack.url('prometheus')}/api/v1/status/config").json()["data"]["yaml"]
    assert after == before
    assert httpx.get(f"{stack.url('prometheus')}/-/ready").status_code == 200


def test_bad_rules_file_is_refused_and_the_old_rules_stay(
    any_stack: lab_stack.Stack, tmp_path: Path
) -> None:
    """A rules file with broken PromQL is refused with promtool's message; no rule is changed."""
    stack = any_stack
    good = tmp_path / "good.yml"
    good.write_text(
        "groups:\n  - name: keep\n    rules:\n      - record: lab:up:sum\n        expr: sum(up)\n"
    )
    stack.apply_rules([good])
    try:
        bad = tmp_path / "bad.yml"
        bad.write_text(
            "groups:\n  - name: broken\n    rules:\n      - alert: Broken\n        expr: rate(up[5m]\n"
        )
        with pytest.raises(PromtoolError, match=r"(?s)bad\.yml.*Hint:"):
            stack.apply_rules([bad])
        groups = httpx.get(f"{stack.url('prometheus')}/api/v1/rules").json()["data"]["groups"]
        assert [g["name"] for g in groups] == ["keep"]
        assert not (stack.rules_dir / "bad.yml").exists()
    finally:
        stack.remove_rules(["good"])


def test_good_prometheus_config_is_applied(any_stack: lab_stack.Stack, tmp_path: Path) -> None:
    """A valid config (relative rule paths included) becomes the running one, then the default returns."""
    stack = any_stack
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yml").write_text(
        "groups:\n  - name: applied\n    rules:\n      - record: lab:x\n        expr: vector(1)\n"
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "rule_files: [rules/*.yml]\n"
        f"scrape_configs:\n  - job_name: self\n    static_configs: [{{targets: ['{stack.url('prometheus').removeprefix('http://')}']}}]\n"
    )
    stack.apply_prometheus_config(config)
    try:
        running = httpx.get(f"{stack.url('prometheus')}/api/v1/status/config").json()["data"][
            "yaml"
        ]
        assert "job_name: self" in running
        assert "applied-rules" in running
        eventually(lambda: _query(stack, "lab:x"), what="the applied rule's series")
    finally:
        stack.reset_config("prometheus")
    running = httpx.get(f"{stack.url('prometheus')}/api/v1/status/config").json()["data"]["yaml"]
    assert "lab-targets" in running


def test_alertmanager_config_with_placeholders_reaches_the_sinks(
    any_stack: lab_stack.Stack, tmp_path: Path
) -> None:
    """${SINKS_URL} in a student's alertmanager.yml is filled as Alertmanager sees the sinks."""
    stack = any_stack
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        textwrap.dedent("""
        route: {receiver: team, group_wait: 1s, group_interval: 1s}
        receivers:
          - name: team
            webhook_configs: [{url: "${SINKS_URL}/webhook/placeholder-team", send_resolved: true}]
    """)
    )
    stack.apply_alertmanager_config(config)
    try:
        running = httpx.get(f"{stack.url('alertmanager')}/api/v2/status").json()["config"][
            "original"
        ]
        assert "${SINKS_URL}" not in running
        assert stack.placeholders(seen_from="alertmanager")["SINKS_URL"] in running
        name = f"Placeholder{uuid.uuid4().hex[:6]}"
        httpx.post(
            f"{stack.url('alertmanager')}/api/v2/alerts",
            json=[{"labels": {"alertname": name}, "annotations": {}}],
        ).raise_for_status()
        eventually(
            lambda: [
                n for n in _notifications(stack, "placeholder-team") if name in str(n["payload"])
            ],
            timeout=20,
            what="the alert at the sink through the filled URL",
        )
    finally:
        stack.reset_config("alertmanager")
