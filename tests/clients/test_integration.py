"""The clients against real Prometheus, Alertmanager, Pushgateway and sinks processes (no fakes)."""

from __future__ import annotations

import smtplib
import time
from email.message import EmailMessage

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from lab_stack.clients import AlertmanagerClient, PrometheusClient, PushgatewayClient, SinksClient
from lab_stack.errors import LabError, NotFound, QueryError

pytestmark = pytest.mark.slow


def test_prometheus_query_value_and_scalar(prometheus_url: str) -> None:
    """A real Prometheus evaluates instant queries into floats."""
    prom = PrometheusClient(prometheus_url)
    assert prom.ready() is True
    assert prom.query_value("1 + 1") == 2.0
    assert prom.query_value("vector(3)") == 3.0
    assert prom.query_value('absent_metric{job="x"}') is None


def test_prometheus_rejects_bad_promql_with_its_own_message(prometheus_url: str) -> None:
    """A PromQL syntax error carries Prometheus's errorType and message, the query, a hint."""
    with pytest.raises(
        QueryError,
        match=r"HTTP 400 for POST .* with query 'sum\(up': bad_data: .*parse error.*Hint: check",
    ) as info:
        PrometheusClient(prometheus_url).query("sum(up")
    assert info.value.status == 400


def test_prometheus_targets_show_health_and_last_error(prometheus_url: str) -> None:
    """The self-scrape becomes up; the target on a closed port is down with a connection error."""
    prom = PrometheusClient(prometheus_url)
    prom.wait_for(
        'up{job="prometheus"}', lambda s: bool(s) and s[0].value == 1, timeout=15, interval=0.2
    )
    deadline = time.monotonic() + 15
    while True:
        (nowhere,) = prom.targets(job="nowhere")
        if nowhere.health == "down" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert nowhere.health == "down"
    assert "connection refused" in nowhere.last_error
    (itself,) = prom.targets(job="prometheus")
    assert itself.up and itself.last_error == ""


def test_prometheus_rules_alerts_status_and_reload(prometheus_url: str) -> None:
    """Rules, alerts, config, flags, TSDB status, series and reload work against the real API."""
    prom = PrometheusClient(prometheus_url)
    (group,) = prom.rules()
    assert {r["name"] for r in group["rules"]} == {"AlwaysFiring", "lab:one"}
    assert [g["name"] for g in prom.rules(type="record")] == ["lab"]
    deadline = time.monotonic() + 15
    while not prom.alerts() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert prom.alerts()[0]["labels"]["alertname"] == "AlwaysFiring"
    assert "job_name: nowhere" in prom.config()
    assert prom.flags()["web.enable-lifecycle"] == "true"
    assert "headStats" in prom.tsdb_status()
    prom.wait_for("lab:one", timeout=15, interval=0.2)
    assert prom.series("lab:one")[0]["__name__"] == "lab:one"
    prom.wait_for('up{job="prometheus"}', timeout=15, interval=0.2)  # its first self-scrape
    assert "prometheus" in prom.label_values("job")
    prom.reload()
    assert prom.runtime_info()["reloadConfigSuccess"] is True


def test_prometheus_query_range_matrix(prometheus_url: str) -> None:
    """A real range query over the last seconds returns a matrix decoded by range_series()."""
    from lab_stack.clients import range_series

    prom = PrometheusClient(prometheus_url)
    now = time.time()
    series = range_series(prom.query_range("vector(7)", start=now - 5, end=now, step=1))
    assert len(series) == 1
    assert set(series[0].values) == {7.0}
    assert len(series[0].points) >= 5


def test_alertmanager_alerts_and_silence_round_trip(alertmanager_url: str) -> None:
    """Posted alerts are listed, silenced, the silence expired; unknown silence ids are NotFound."""
    am = AlertmanagerClient(alertmanager_url)
    assert am.ready() is True
    assert am.receivers() == ["lab-webhook"]
    assert "lab-webhook" in am.status()["config"]["original"]
    am.post_alerts([{"labels": {"alertname": "ClientTest", "severity": "page"}}])
    (alert,) = am.alerts(filter=['alertname="ClientTest"'])
    assert alert["status"]["state"] == "active"
    sid = am.create_silence(
        {"alertname": "ClientTest"}, duration=300, comment="test", created_by="pytest"
    )
    assert any(s["id"] == sid for s in am.silences())
    assert am.silence(sid)["status"]["state"] == "active"
    deadline = time.monotonic() + 10
    while (
        am.alerts(filter=['alertname="ClientTest"'], silenced=False) and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert am.alerts(filter=['alertname="ClientTest"'], silenced=False) == []
    am.delete_silence(sid)
    assert am.silence(sid)["status"]["state"] == "expired"
    unknown = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(NotFound, match=f"Alertmanager has no silence '{unknown}'"):
        am.delete_silence(unknown)
    with pytest.raises(NotFound, match=f"Alertmanager has no silence '{unknown}' \\(HTTP 404"):
        am.silence(unknown)


def test_alertmanager_rejects_a_bad_filter(alertmanager_url: str) -> None:
    """A malformed matcher is answered 400 and raised as QueryError with Alertmanager's text."""
    with pytest.raises(QueryError, match=r"HTTP 400 .*: .*Hint: check the matchers"):
        AlertmanagerClient(alertmanager_url).alerts(filter=["not a matcher"])


def test_pushgateway_lists_and_deletes_a_group_with_a_slash(pushgateway_url: str) -> None:
    """A group pushed by prometheus_client (with a '/' in its key) is listed and then deleted."""
    registry = CollectorRegistry()
    Gauge("train_loss", "loss", registry=registry).set(0.25)
    push_to_gateway(
        pushgateway_url, job="batch_train", registry=registry, grouping_key={"run": "a/b"}
    )
    pgw = PushgatewayClient(pushgateway_url)
    (group,) = [g for g in pgw.metrics() if g.job == "batch_train"]
    assert group.labels["run"] == "a/b"
    assert group.values("train_loss") == [0.25]
    pgw.delete_group("batch_train", {"run": "a/b"})
    assert [g for g in pgw.metrics() if g.job == "batch_train"] == []


def test_sinks_client_against_the_real_sink(sinks_ports: tuple[str, int]) -> None:
    """Webhook, Slack and email notifications sent to the real sink are listed, awaited, cleared."""
    url, smtp_port = sinks_ports
    sinks = SinksClient(url)
    assert sinks.ready() is True
    sinks.clear()
    webhook = {
        "version": "4",
        "status": "firing",
        "receiver": "lab-webhook",
        "groupLabels": {"alertname": "HighLatency"},
        "alerts": [{"status": "firing", "labels": {"alertname": "HighLatency"}}],
    }
    httpx.post(f"{url}/webhook/lab-webhook", json=webhook).raise_for_status()
    httpx.post(
        f"{url}/slack/lab-slack",
        json={"channel": "#a", "attachments": [{"title": "[RESOLVED] HighLatency"}]},
    ).raise_for_status()
    message = EmailMessage()
    message["From"], message["To"] = "am@lab", "oncall@lab"
    message["Subject"] = "[FIRING:1] HighLatency (page)"
    message.set_content("latency is high")
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
        smtp.send_message(message)

    (hook,) = sinks.wait_for(alertname="HighLatency", kind="webhook", timeout=10)
    assert (hook.receiver, hook.status) == ("lab-webhook", "firing")
    (slack,) = sinks.wait_for(kind="slack", status="resolved", timeout=10)
    assert slack.receiver == "lab-slack"
    (mail,) = sinks.wait_for(kind="email", timeout=10)
    assert (mail.receiver, mail.status) == ("oncall@lab", "firing")
    assert [n.kind for n in sinks.notifications()] == ["webhook", "slack", "email"]
    assert sinks.notifications(since=slack.received_at) == [slack, mail]
    with pytest.raises(LabError, match=r"matching alertname='Nope'.*3 arrived: #"):
        sinks.wait_for(alertname="Nope", timeout=0.3)
    sinks.clear(receiver="lab-slack")
    assert [n.kind for n in sinks.notifications()] == ["webhook", "email"]
    sinks.clear()
    assert sinks.notifications() == []
