"""Specification of PushgatewayClient: /api/v1/metrics decoding and escaped group paths."""

from __future__ import annotations

import base64

import pytest

from lab_stack.clients import PushgatewayClient
from lab_stack.clients.pushgateway import group_path
from lab_stack.errors import QueryError

from ._fake import FakeAPI, prom_ok

GROUP = {
    "labels": {"job": "batch_train", "instance": "gpu0"},
    "last_push_successful": True,
    "train_loss": {
        "time_stamp": "2024-01-01T00:00:00Z",
        "type": "GAUGE",
        "help": "loss",
        "metrics": [{"labels": {"job": "batch_train", "instance": "gpu0"}, "value": "0.25"}],
    },
    "push_time_seconds": {"metrics": [{"labels": {}, "value": "1.7e+09"}], "type": "GAUGE"},
}


def make(fake: FakeAPI) -> PushgatewayClient:
    return PushgatewayClient("http://pgw.test:9091", transport=fake.transport)


def test_metrics_decodes_groups() -> None:
    """metrics() reads /api/v1/metrics into groups with labels, families and values."""
    fake = FakeAPI().on("GET", "/api/v1/metrics", json_body=prom_ok([GROUP]))
    (group,) = make(fake).metrics()
    assert group.job == "batch_train"
    assert group.labels["instance"] == "gpu0"
    assert group.last_push_successful is True
    assert group.metric_names == ["push_time_seconds", "train_loss"]
    assert group.values("train_loss") == [0.25]
    assert group.values("missing") == []


def test_delete_group_path_with_grouping_key() -> None:
    """delete_group() DELETEs /metrics/job/<job>/<label>/<value>."""
    fake = FakeAPI().on("DELETE", "/metrics/job/batch_train/instance/gpu0")
    make(fake).delete_group("batch_train", {"instance": "gpu0"})
    assert fake.last.method == "DELETE"


def test_group_path_escapes_like_prometheus_client() -> None:
    """Values with '/' or ' ' use @base64 (URL-safe); empty values use '@base64/='."""
    encoded = base64.urlsafe_b64encode(b"a/b c").decode()
    assert group_path("j", {"path": "a/b c"}) == f"/metrics/job/j/path@base64/{encoded}"
    assert group_path("j", {"empty": ""}) == "/metrics/job/j/empty@base64/="
    assert (
        group_path("my/job")
        == "/metrics/job@base64/" + base64.urlsafe_b64encode(b"my/job").decode()
    )


def test_delete_error_names_the_group_path() -> None:
    """A failed delete raises QueryError quoting the group path."""
    fake = FakeAPI().on("DELETE", "/metrics/job/x", text="internal", status=500)
    with pytest.raises(
        QueryError, match=r"HTTP 500 for DELETE .* with query '/metrics/job/x': internal\."
    ):
        make(fake).delete_group("x")


def test_ready() -> None:
    """ready() is True on 200 from /-/ready."""
    assert make(FakeAPI().on("GET", "/-/ready", text="OK")).ready() is True
