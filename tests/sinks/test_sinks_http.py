"""The sinks' HTTP and SMTP receivers and their query API, against a real sinks process."""

from __future__ import annotations

import smtplib
import time
from email.message import EmailMessage

import httpx

WEBHOOK = {
    "version": "4",
    "groupKey": '{}:{alertname="HighErrorRate"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "team-webhook",
    "groupLabels": {"alertname": "HighErrorRate"},
    "commonLabels": {"alertname": "HighErrorRate", "severity": "critical"},
    "commonAnnotations": {"summary": "error ratio above 5%"},
    "externalURL": "http://127.0.0.1:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "HighErrorRate", "severity": "critical"},
            "annotations": {"summary": "error ratio above 5%", "runbook_url": "http://rb"},
            "startsAt": "2024-01-01T00:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://127.0.0.1:9090/graph",
            "fingerprint": "abc123",
        }
    ],
}

SLACK = {
    "channel": "#alerts",
    "username": "Alertmanager",
    "text": "",
    "attachments": [
        {
            "title": "[FIRING:1] HighErrorRate",
            "text": "error ratio above 5%",
            "fallback": "[FIRING:1] HighErrorRate",
            "color": "danger",
            "fields": [{"title": "severity", "value": "critical", "short": True}],
            "actions": [{"type": "button", "text": "Runbook", "url": "http://rb"}],
            "mrkdwn_in": ["fallback", "pretext", "text"],
        }
    ],
}


def _list(client: httpx.Client, **params: str) -> list[dict[str, object]]:
    r = client.get("/api/notifications", params=params)
    assert r.status_code == 200, r.text
    notes = r.json()["notifications"]
    assert isinstance(notes, list)
    return notes


def test_ready_answers_ready(client: httpx.Client) -> None:
    """GET /ready answers 200 with the body ``ready``."""
    r = client.get("/ready")
    assert (r.status_code, r.text) == (200, "ready")


def test_webhook_payload_is_stored_verbatim(client: httpx.Client) -> None:
    """A webhook payload is acknowledged and listed with its receiver, kind and payload."""
    before = time.time()
    r = client.post("/webhook/wh-store", json=WEBHOOK)
    assert r.status_code == 200
    (note,) = _list(client, receiver="wh-store")
    assert note["kind"] == "webhook"
    assert note["payload"] == WEBHOOK
    assert isinstance(note["id"], int)
    assert before <= float(note["received_at"]) <= time.time()  # type: ignore[arg-type]


def test_slack_payload_answers_ok_like_slack(client: httpx.Client) -> None:
    """A Slack incoming-webhook payload gets 200 with body ``ok`` and is stored as kind slack."""
    r = client.post("/slack/sl-ok", json=SLACK)
    assert (r.status_code, r.text) == (200, "ok")
    (note,) = _list(client, receiver="sl-ok", kind="slack")
    assert note["payload"]["attachments"][0]["title"] == "[FIRING:1] HighErrorRate"  # type: ignore[index]


def test_bad_bodies_get_400_with_plain_reason(client: httpx.Client) -> None:
    """Malformed JSON, non-objects and payloads of the wrong shape get 400 and are not stored."""
    cases = [
        ("/webhook/bad", b"{not json", "malformed JSON"),
        ("/webhook/bad", b"[1, 2]", "expected a JSON object"),
        ("/webhook/bad", b'{"status": "firing"}', "'alerts' list"),
        ("/webhook/bad", b"\xff\xfe\xfa", "malformed JSON"),
        ("/webhook/bad", b"[" * 100_000, "malformed JSON"),
        ("/slack/bad", b'{"channel": "#x"}', "no_text"),
        ("/slack/bad", b'{"text": "x", "attachments": {}}', "invalid_attachments"),
    ]
    for path, body, reason in cases:
        r = client.post(path, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, (body[:20], r.status_code, r.text)
        assert reason in r.text
        assert r.headers["content-type"].startswith("text/plain")
    assert _list(client, receiver="bad") == []
    assert client.get("/ready").status_code == 200


def test_oversized_body_gets_413(client: httpx.Client) -> None:
    """A body above 4 MiB is refused with 413, with or without a Content-Length."""
    big = b'{"text": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    assert client.post("/slack/big", content=big).status_code == 413

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(6):
            yield b"x" * (1024 * 1024)

    assert client.post("/slack/big", content=chunks()).status_code == 413
    assert _list(client, receiver="big") == []


def test_email_is_stored_parsed(sinks, client: httpx.Client) -> None:
    """A multipart email sent with smtplib is stored with sender, recipients, subject and bodies."""
    msg = EmailMessage()
    msg["From"] = "alertmanager@lab.example"
    msg["To"] = "oncall@lab.example, boss@lab.example"
    msg["Subject"] = "[FIRING:1] DiskFull"
    msg.set_content("disk is full\n")
    msg.add_alternative("<p>disk is <b>full</b></p>\n", subtype="html")
    with smtplib.SMTP("127.0.0.1", sinks.smtp_port, timeout=10) as smtp:
        refused = smtp.send_message(msg)
    assert refused == {}
    (note,) = _list(client, receiver="oncall@lab.example")
    assert note["kind"] == "email"
    payload = note["payload"]
    assert isinstance(payload, dict)
    assert payload["mail_from"] == "alertmanager@lab.example"
    assert payload["rcpt_tos"] == ["oncall@lab.example", "boss@lab.example"]
    assert payload["subject"] == "[FIRING:1] DiskFull"
    assert payload["body"] == "disk is full\n"
    assert payload["html"] == "<p>disk is <b>full</b></p>\n"
    assert payload["headers"]["To"] == "oncall@lab.example, boss@lab.example"


def test_list_filters_by_receiver_kind_and_since(client: httpx.Client) -> None:
    """Listing filters on receiver, kind and since, and keeps arrival order."""
    client.post("/webhook/flt-a", json=WEBHOOK)
    client.post("/slack/flt-a", json={"text": "first"})
    mark = time.time()
    time.sleep(0.02)
    client.post("/slack/flt-a", json={"text": "second"})
    client.post("/slack/flt-b", json={"text": "other"})
    assert [n["kind"] for n in _list(client, receiver="flt-a")] == ["webhook", "slack", "slack"]
    texts = [n["payload"]["text"] for n in _list(client, receiver="flt-a", kind="slack")]  # type: ignore[index]
    assert texts == ["first", "second"]
    recent = _list(client, since=str(mark))
    assert [n["receiver"] for n in recent] == ["flt-a", "flt-b"]
    ids = [n["id"] for n in _list(client)]
    assert ids == sorted(ids)
    assert client.get("/api/notifications", params={"kind": "pager"}).status_code == 400
    assert client.get("/api/notifications", params={"since": "yesterday"}).status_code == 400


def test_delete_clears_by_receiver_or_all(client: httpx.Client) -> None:
    """DELETE with a receiver clears only that receiver; without one it clears everything."""
    client.post("/slack/del-a", json={"text": "a"})
    client.post("/slack/del-b", json={"text": "b"})
    r = client.delete("/api/notifications", params={"receiver": "del-a"})
    assert r.status_code == 200 and r.json() == {"deleted": 1}
    assert _list(client, receiver="del-a") == []
    assert len(_list(client, receiver="del-b")) == 1
    assert client.delete("/api/notifications").status_code == 200
    assert _list(client) == []


def test_metrics_count_notifications(client: httpx.Client) -> None:
    """/metrics exposes lab_sink_notifications_total by receiver and kind."""
    client.post("/slack/met", json={"text": "a"})
    client.post("/slack/met", json={"text": "b"})
    client.post("/webhook/met", json=WEBHOOK)
    text = client.get("/metrics").text
    assert 'lab_sink_notifications_total{kind="slack",receiver="met"} 2.0' in text
    assert 'lab_sink_notifications_total{kind="webhook",receiver="met"} 1.0' in text
