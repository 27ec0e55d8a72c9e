"""Specification of AlertmanagerClient against Alertmanager's API v2 paths and shapes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lab_stack.clients import AlertmanagerClient, Matcher
from lab_stack.errors import NotFound, QueryError

from ._fake import FakeAPI, body, params

ALERT = {
    "labels": {"alertname": "HighLatency", "severity": "page"},
    "annotations": {},
    "status": {"state": "active", "silencedBy": [], "inhibitedBy": []},
    "receivers": [{"name": "lab-webhook"}],
    "fingerprint": "abc",
}


def make(fake: FakeAPI) -> AlertmanagerClient:
    return AlertmanagerClient("http://am.test:9093", transport=fake.transport)


def test_alerts_sends_v2_filters() -> None:
    """alerts() reads /api/v2/alerts with true/false booleans and one filter= per matcher."""
    fake = FakeAPI().on("GET", "/api/v2/alerts", json_body=[ALERT])
    found = make(fake).alerts(
        active=True, silenced=False, filter=['alertname="HighLatency"', "severity=~page|ticket"]
    )
    assert found == [ALERT]
    assert params(fake.last) == {
        "active": ["true"],
        "silenced": ["false"],
        "filter": ['alertname="HighLatency"', "severity=~page|ticket"],
    }


def test_alert_groups_path() -> None:
    """alert_groups() reads /api/v2/alerts/groups."""
    group = {"labels": {"alertname": "A"}, "receiver": {"name": "r"}, "alerts": [ALERT]}
    fake = FakeAPI().on("GET", "/api/v2/alerts/groups", json_body=[group])
    assert make(fake).alert_groups(receiver="r") == [group]
    assert params(fake.last) == {"receiver": ["r"]}


def test_post_alerts_sends_a_json_list_with_rfc3339_times() -> None:
    """post_alerts() POSTs a JSON list; datetime startsAt/endsAt become RFC 3339 UTC."""
    fake = FakeAPI().on("POST", "/api/v2/alerts")
    start = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    make(fake).post_alerts([{"labels": {"alertname": "T"}, "startsAt": start}])
    assert body(fake.last) == [{"labels": {"alertname": "T"}, "startsAt": "2024-01-02T03:04:05Z"}]


def test_bad_alert_is_query_error_with_alertmanager_text() -> None:
    """A 400 from Alertmanager (a JSON string body) raises QueryError quoting it."""
    fake = FakeAPI().on(
        "POST", "/api/v2/alerts", json_body="start time must be before end time", status=400
    )
    with pytest.raises(
        QueryError,
        match=r"HTTP 400 .*: start time must be before end time.*Hint: check the matchers",
    ):
        make(fake).post_alerts([{"labels": {}}])


def test_create_silence_body_and_returned_id() -> None:
    """create_silence() POSTs matchers and a window of the duration, and returns silenceID."""
    fake = FakeAPI().on("POST", "/api/v2/silences", json_body={"silenceID": "d3b0"})
    start = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    sid = make(fake).create_silence(
        {"alertname": "Noisy"},
        duration=600,
        comment="maintenance",
        created_by="me",
        starts_at=start,
    )
    assert sid == "d3b0"
    assert body(fake.last) == {
        "matchers": [{"name": "alertname", "value": "Noisy", "isRegex": False, "isEqual": True}],
        "startsAt": "2024-01-01T12:00:00Z",
        "endsAt": "2024-01-01T12:10:00Z",
        "createdBy": "me",
        "comment": "maintenance",
    }


def test_create_silence_with_regex_and_negative_matchers() -> None:
    """Matcher objects carry regex and negative matching through to the API."""
    fake = FakeAPI().on("POST", "/api/v2/silences", json_body={"silenceID": "x"})
    make(fake).create_silence(
        [Matcher("severity", "warn|info", is_regex=True), Matcher("env", "prod", is_equal=False)]
    )
    assert body(fake.last)["matchers"] == [
        {"name": "severity", "value": "warn|info", "isRegex": True, "isEqual": True},
        {"name": "env", "value": "prod", "isRegex": False, "isEqual": False},
    ]
    assert str(Matcher("env", "prod", is_equal=False)) == "env!='prod'"


def test_silences_and_delete_silence_paths() -> None:
    """silences() lists /api/v2/silences; delete_silence() DELETEs /api/v2/silence/<id>."""
    fake = FakeAPI().on(
        "GET", "/api/v2/silences", json_body=[{"id": "s1", "status": {"state": "active"}}]
    )
    fake.on("DELETE", "/api/v2/silence/s1")
    am = make(fake)
    assert am.silences()[0]["id"] == "s1"
    am.delete_silence("s1")
    assert (fake.last.method, fake.last.url.path) == ("DELETE", "/api/v2/silence/s1")


def test_deleting_an_unknown_silence_is_not_found() -> None:
    """A 404 on delete raises NotFound naming the silence id."""
    fake = FakeAPI().on("DELETE", "/api/v2/silence/nope", json_body="silence not found", status=404)
    with pytest.raises(NotFound, match=r"Alertmanager has no silence 'nope'.*Hint:"):
        make(fake).delete_silence("nope")


def test_alertmanager_025_delete_of_unknown_silence_500_is_not_found() -> None:
    """Alertmanager 0.25 answers DELETE of an unknown silence with 500 'not found': NotFound."""
    fake = FakeAPI().on("DELETE", "/api/v2/silence/x", json_body="silence not found", status=500)
    with pytest.raises(NotFound, match=r"has no silence 'x' \(HTTP 500\).*: silence not found"):
        make(fake).delete_silence("x")


def test_other_server_errors_on_delete_stay_query_errors() -> None:
    """A 500 that does not say 'not found' stays a QueryError."""
    fake = FakeAPI().on("DELETE", "/api/v2/silence/x", json_body="database is locked", status=500)
    with pytest.raises(QueryError, match=r"HTTP 500 .*: database is locked") as info:
        make(fake).delete_silence("x")
    assert not isinstance(info.value, NotFound)


def test_status_receivers_ready_reload() -> None:
    """status(), receivers(), ready() and reload() use their v2 and lifecycle paths."""
    fake = (
        FakeAPI()
        .on(
            "GET",
            "/api/v2/status",
            json_body={"config": {"original": "route: {}"}, "versionInfo": {"version": "0.25.0"}},
        )
        .on("GET", "/api/v2/receivers", json_body=[{"name": "lab-webhook"}, {"name": "lab-slack"}])
        .on("GET", "/-/ready", text="OK")
        .on("POST", "/-/reload")
    )
    am = make(fake)
    assert am.status()["config"]["original"] == "route: {}"
    assert am.receivers() == ["lab-webhook", "lab-slack"]
    assert am.ready() is True
    am.reload()
    assert (fake.last.method, fake.last.url.path) == ("POST", "/-/reload")


def test_failed_reload_points_at_amtool() -> None:
    """A failed reload suggests amtool check-config."""
    fake = FakeAPI().on(
        "POST", "/-/reload", text="failed to reload config: yaml: line 3", status=500
    )
    with pytest.raises(
        QueryError, match=r"failed to reload config: yaml: line 3.*Hint: run `amtool check-config`"
    ):
        make(fake).reload()
