"""End to end: a real Alertmanager delivers webhook, Slack and email notifications to the sinks."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from lab_stack.ports import free_port

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def _wait(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.slow
def test_alertmanager_fires_and_resolves_to_all_three_sinks(sinks, tmp_path: Path) -> None:
    """An alert posted to Alertmanager reaches the webhook, Slack and email sinks, then resolves."""
    assert ALERTMANAGER, "prometheus-alertmanager is not installed. Hint: run `make setup`."
    port = free_port()
    config = {
        "global": {"resolve_timeout": "5m"},
        "route": {
            "receiver": "lab",
            "group_by": ["alertname"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": "lab",
                "webhook_configs": [
                    {"url": f"{sinks.url}/webhook/am-webhook", "send_resolved": True}
                ],
                "slack_configs": [
                    {
                        "api_url": f"{sinks.url}/slack/am-slack",
                        "channel": "#alerts",
                        "send_resolved": True,
                        "title": "{{ .Status }} {{ .CommonLabels.alertname }}",
                        "text": "{{ .CommonAnnotations.summary }}",
                    }
                ],
                "email_configs": [
                    {
                        "to": "oncall@lab.example",
                        "from": "alertmanager@lab.example",
                        "smarthost": f"127.0.0.1:{sinks.smtp_port}",
                        "require_tls": False,
                        "send_resolved": True,
                    }
                ],
            }
        ],
    }
    cfg = tmp_path / "alertmanager.yml"
    cfg.write_text(yaml.safe_dump(config))
    log = tmp_path / "alertmanager.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                ALERTMANAGER,
                f"--config.file={cfg}",
                f"--storage.path={tmp_path / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    am = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return httpx.get(f"{am}/-/ready", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        _wait(ready, 20, "Alertmanager /-/ready")
        now = dt.datetime.now(dt.UTC)
        alert = {
            "labels": {"alertname": "LabSinkE2E", "severity": "critical"},
            "annotations": {"summary": "the sinks end-to-end test fired"},
            "startsAt": now.isoformat(),
        }
        assert httpx.post(f"{am}/api/v2/alerts", json=[alert], timeout=5).status_code == 200

        def received(status: str) -> list[dict[str, object]] | None:
            notes = httpx.get(f"{sinks.url}/api/notifications", timeout=5).json()["notifications"]
            mine = {}
            for n in notes:
                p = n["payload"]
                if n["kind"] == "webhook" and n["receiver"] == "am-webhook":
                    ok = p["status"] == status
                elif n["kind"] == "slack" and n["receiver"] == "am-slack":
                    ok = p["attachments"][0]["title"] == f"{status} LabSinkE2E"
                elif n["kind"] == "email" and n["receiver"] == "oncall@lab.example":
                    ok = f"[{status.upper()}" in p["subject"]
                else:
                    ok = False
                if ok:
                    mine[n["kind"]] = n
            return list(mine.values()) if len(mine) == 3 else None

        firing = _wait(lambda: received("firing"), 30, "three firing notifications")
        by_kind = {n["kind"]: n["payload"] for n in firing}
        webhook = by_kind["webhook"]
        assert webhook["version"] == "4" and webhook["receiver"] == "lab"  # type: ignore[index]
        assert webhook["commonLabels"]["alertname"] == "LabSinkE2E"  # type: ignore[index]
        assert by_kind["slack"]["channel"] == "#alerts"  # type: ignore[index]
        assert by_kind["email"]["mail_from"] == "alertmanager@lab.example"  # type: ignore[index]
        assert "LabSinkE2E" in by_kind["email"]["body"]  # type: ignore[index]

        alert["endsAt"] = dt.datetime.now(dt.UTC).isoformat()
        assert httpx.post(f"{am}/api/v2/alerts", json=[alert], timeout=5).status_code == 200
        _wait(lambda: received("resolved"), 30, "three resolved notifications")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
