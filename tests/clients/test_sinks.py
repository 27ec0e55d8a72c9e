"""Specification of SinksClient against the notification sink's API, and of Notification."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from lab_stack.clients import Notification, SinksClient
from lab_stack.errors import LabError

from ._fake import FakeAPI, params


def webhook(n: int, alertname: str, status: str, receiver: str = "lab-webhook") -> dict[str, Any]:
    return {
        "id": n,
        "receiver": receiver,
        "kind": "webhook",
        "received_at": 1700000000.0 + n,
        "payload": {
            "version": "4",
            "status": status,
            "receiver": receiver,
            "groupLabels": {"alertname": alertname},
            "commonLabels": {"alertname": alertname},
            "alerts": [{"status": status, "labels": {"alertname": alertname, "severity": "page"}}],
        },
    }


SLACK = {
    "id": 9,
    "receiver": "lab-slack",
    "kind": "slack",
    "received_at": 1700000100.0,
    "payload": {"channel": "#alerts", "attachments": [{"title": "[RESOLVED] HighLatency (page)"}]},
}


def make(fake: FakeAPI) -> SinksClient:
    return SinksClient("http://sinks.test:9095", transport=fake.transport)


def test_notifications_sends_filters_and_decodes() -> None:
    """notifications() sends receiver, kind and since, and returns frozen Notification records."""
    fake = FakeAPI().on(
        "GET", "/api/notifications", json_body={"notifications": [webhook(1, "A", "firing")]}
    )
    (note,) = make(fake).notifications(receiver="lab-webhook", kind="webhook", since=1700000000.5)
    assert params(fake.last) == {
        "receiver": ["lab-webhook"],
        "kind": ["webhook"],
        "since": ["1700000000.5"],
    }
    assert note == Notification.from_api(webhook(1, "A", "firing"))
    assert (note.id, note.receiver, note.kind, note.received_at) == (
        1,
        "lab-webhook",
        "webhook",
        1700000001.0,
    )
    assert note.alertnames == ("A",)
    assert note.status == "firing"
    assert note.alerts[0]["labels"]["severity"] == "page"
    with pytest.raises(AttributeError):
        note.id = 2  # type: ignore[misc]


def test_slack_status_and_empty_payloads() -> None:
    """A Slack payload's status comes from its title; an unknown payload has no names or status."""
    slack = Notification.from_api(SLACK)
    assert slack.status == "resolved"
    assert slack.alertnames == ()
    empty = Notification.from_api(
        {"id": 3, "receiver": "r", "kind": "email", "received_at": 0, "payload": {}}
    )
    assert (empty.status, empty.alertnames) == ("", ())
    assert empty.describe() == "#3 email to 'r': ? ?"


def test_alertnames_fall_back_to_group_labels() -> None:
    """Without an alerts list, alertnames come from groupLabels."""
    note = Notification.from_api(
        {
            "id": 1,
            "receiver": "r",
            "kind": "webhook",
            "received_at": 0,
            "payload": {"groupLabels": {"alertname": "G"}},
        }
    )
    assert note.alertnames == ("G",)


def test_clear_deletes_all_or_one_receiver() -> None:
    """clear() DELETEs /api/notifications, with receiver= when given."""
    fake = FakeAPI().on("DELETE", "/api/notifications", json_body={"deleted": 2})
    sinks = make(fake)
    sinks.clear()
    assert params(fake.last) == {}
    sinks.clear(receiver="lab-slack")
    assert params(fake.last) == {"receiver": ["lab-slack"]}


def test_wait_for_returns_matching_notifications_once_they_arrive() -> None:
    """wait_for() polls until a notification matches alertname and status; returns the matches."""
    arrivals = [
        [],
        [webhook(1, "A", "firing")],
        [webhook(1, "A", "firing"), webhook(2, "A", "resolved")],
    ]
    lock = threading.Lock()

    def reply(request: httpx.Request) -> httpx.Response:
        with lock:
            current = arrivals.pop(0) if len(arrivals) > 1 else arrivals[0]
        return httpx.Response(200, json={"notifications": current})

    fake = FakeAPI().on("GET", "/api/notifications", reply=reply)
    found = make(fake).wait_for(
        alertname="A", status="resolved", receiver="lab-webhook", timeout=5, interval=0.01
    )
    assert [n.id for n in found] == [2]
    assert len(fake.requests) == 3
    assert params(fake.last) == {"receiver": ["lab-webhook"]}


def test_wait_for_with_a_predicate_and_a_count() -> None:
    """wait_for() applies a predicate and waits for count matches."""
    notes = [webhook(1, "A", "firing"), webhook(2, "B", "firing"), webhook(3, "B", "firing")]
    fake = FakeAPI().on("GET", "/api/notifications", json_body={"notifications": notes})
    found = make(fake).wait_for(lambda n: "B" in n.alertnames, count=2, timeout=1)
    assert [n.id for n in found] == [2, 3]


def test_wait_for_timeout_lists_what_did_arrive() -> None:
    """On timeout wait_for() raises LabError naming what was wanted and what arrived."""
    fake = FakeAPI().on(
        "GET",
        "/api/notifications",
        json_body={"notifications": [webhook(1, "Other", "firing"), SLACK]},
    )
    with pytest.raises(LabError) as info:
        make(fake).wait_for(alertname="HighLatency", status="firing", timeout=0.1, interval=0.02)
    message = str(info.value)
    assert "expected 1 notification(s) matching alertname='HighLatency', status='firing'" in message
    assert (
        "2 arrived: #1 webhook to 'lab-webhook': Other firing; #9 slack to 'lab-slack': ? resolved"
        in message
    )
    assert "Hint:" in message


def test_wait_for_timeout_when_nothing_arrived() -> None:
    """With an empty sink the timeout message says nothing arrived."""
    fake = FakeAPI().on("GET", "/api/notifications", json_body={"notifications": []})
    with pytest.raises(
        LabError, match=r"matching any notification at http://sinks.test:9095; nothing arrived"
    ):
        make(fake).wait_for(timeout=0.05, interval=0.01)


def test_ready_uses_slash_ready() -> None:
    """ready() is True on 200 from /ready, False on 503."""
    fake = FakeAPI().on("GET", "/ready", text="ready")
    assert make(fake).ready() is True
    fake.on("GET", "/ready", text="starting", status=503)
    assert make(fake).ready() is False
