"""The sinks keep every acknowledged notification across kill -9 and stop cleanly on SIGTERM."""

from __future__ import annotations

import signal
import smtplib
from pathlib import Path

import httpx

from lab_stack.sinks import NotificationStore


def test_kill_9_keeps_acknowledged_notifications(tmp_path: Path, launch_sinks) -> None:
    """After kill -9 and a restart, every acknowledged notification and every clear is kept."""
    data = tmp_path / "data"
    sinks = launch_sinks(data)
    try:
        with httpx.Client(base_url=sinks.url, timeout=10) as c:
            for i in range(20):
                assert c.post(f"/slack/r{i % 2}", json={"text": f"n{i}"}).status_code == 200
            assert c.delete("/api/notifications", params={"receiver": "r1"}).json() == {
                "deleted": 10
            }
        with smtplib.SMTP("127.0.0.1", sinks.smtp_port, timeout=10) as smtp:
            smtp.sendmail("am@lab", ["ops@lab"], b"Subject: s\r\n\r\nbody\r\n")
    finally:
        sinks.stop(signal.SIGKILL)
    again = launch_sinks(data)
    try:
        with httpx.Client(base_url=again.url, timeout=10) as c:
            notes = c.get("/api/notifications").json()["notifications"]
            assert [n["payload"].get("text") for n in notes[:-1]] == [
                f"n{i}" for i in range(0, 20, 2)
            ]
            assert notes[-1]["receiver"] == "ops@lab" and notes[-1]["payload"]["subject"] == "s"
            new = c.post("/webhook/r9", json={"alerts": []}).json()
            assert new["id"] > max(n["id"] for n in notes)  # ids are never reused
            metrics = c.get("/metrics").text
            assert 'lab_sink_notifications_total{kind="slack",receiver="r0"} 10.0' in metrics
    finally:
        assert again.stop(signal.SIGTERM) == 0


def test_sigterm_exits_zero(tmp_path: Path, launch_sinks) -> None:
    """SIGTERM stops the sinks with exit status 0 and a log line saying so."""
    sinks = launch_sinks(tmp_path / "data")
    assert sinks.stop(signal.SIGTERM) == 0
    assert "sinks stopped" in sinks.log.read_text()


def test_store_skips_a_torn_last_line(tmp_path: Path) -> None:
    """A half-written last line (never acknowledged) is skipped when the store reloads."""
    store = NotificationStore(tmp_path)
    store.add(receiver="a", kind="webhook", payload={"alerts": []})
    store.close()
    with (tmp_path / "notifications.jsonl").open("a") as fh:
        fh.write('{"id": 2, "receiver": "a", "ki')
    reloaded = NotificationStore(tmp_path)
    assert [n.id for n in reloaded.list()] == [1]
    assert reloaded.add(receiver="a", kind="slack", payload={}).id == 2
    reloaded.close()


def test_public_names_are_pinned() -> None:
    """The sinks package exports exactly its documented names."""
    import lab_stack.sinks as sinks

    assert sorted(sinks.__all__) == [
        "KINDS",
        "MAX_BODY_BYTES",
        "Notification",
        "NotificationStore",
        "SinkMetrics",
        "SmtpHandler",
        "create_app",
        "parse_email",
        "serve",
    ]
