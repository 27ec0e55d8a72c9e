"""Typed client for the lab's notification sink, which records what Alertmanager sends.

The sink's HTTP API: ``GET /ready``; ``GET /api/notifications?receiver=&kind=&since=`` →
``{"notifications": [{"id", "receiver", "kind", "received_at", "payload"}]}``;
``DELETE /api/notifications[?receiver=]``.

Example:
    >>> from lab_stack.clients import SinksClient
    >>> sinks = SinksClient("http://127.0.0.1:9095")  # doctest: +SKIP
    >>> sinks.wait_for(alertname="AlwaysFiring", status="resolved", timeout=60)  # doctest: +SKIP
    [Notification(id=3, receiver='lab-webhook', kind='webhook', ...)]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from lab_stack.clients._http import BaseClient, poll

__all__ = ["Notification", "NotificationKind", "SinksClient"]

NotificationKind = Literal["webhook", "slack", "email"]

#: Alertmanager's default Slack/email title: "[FIRING:2] AlertName ..." or "[RESOLVED] AlertName".
_TITLE = re.compile(r"^\[(?P<status>FIRING|RESOLVED)(?::\d+)?\]\s*(?P<rest>.*)$", re.S)


@dataclass(frozen=True)
class Notification:
    """One notification the sink received: which receiver, which kind, when, and its payload."""

    id: int
    receiver: str
    kind: str
    received_at: float
    payload: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> Notification:
        """Build from one element of the sink's ``notifications`` list."""
        return cls(
            id=int(raw["id"]),
            receiver=str(raw.get("receiver", "")),
            kind=str(raw.get("kind", "")),
            received_at=float(raw.get("received_at", 0.0)),
            payload=dict(raw.get("payload") or {}),
        )

    def _title(self) -> str:
        attachments = self.payload.get("attachments") or []
        if attachments and isinstance(attachments[0], Mapping):
            return str(attachments[0].get("title", ""))
        return str(self.payload.get("subject", self.payload.get("text", "")))

    @property
    def alerts(self) -> list[dict[str, Any]]:
        """The alerts of a webhook payload (empty for other kinds)."""
        return list(self.payload.get("alerts") or [])

    @property
    def alertnames(self) -> tuple[str, ...]:
        """Names of the alerts carried: from a webhook's alerts, else from the group labels."""
        names = [str(a.get("labels", {}).get("alertname", "")) for a in self.alerts]
        if not names:
            for key in ("groupLabels", "commonLabels"):
                name = (self.payload.get(key) or {}).get("alertname")
                if name:
                    names = [str(name)]
                    break
        return tuple(dict.fromkeys(n for n in names if n))

    @property
    def status(self) -> str:
        """``firing`` or ``resolved`` (webhook ``status``, or a Slack/email title); else ``""``."""
        value = self.payload.get("status")
        if isinstance(value, str) and value:
            return value
        match = _TITLE.match(self._title())
        return match.group("status").lower() if match else ""

    def describe(self) -> str:
        """A one-line summary for messages: id, receiver, kind, alertnames and status."""
        names = ",".join(self.alertnames) or "?"
        return f"#{self.id} {self.kind} to {self.receiver!r}: {names} {self.status or '?'}"


class SinksClient(BaseClient):
    """Client for the notification sink: list, clear and wait for notifications."""

    backend: ClassVar[str] = "notification sink"
    component: ClassVar[str] = "sinks"

    def notifications(
        self,
        *,
        receiver: str | None = None,
        kind: NotificationKind | None = None,
        since: float | None = None,
    ) -> list[Notification]:
        """The notifications received, oldest first, optionally filtered."""
        body = self._get_json(
            "/api/notifications",
            params={"receiver": receiver, "kind": kind, "since": since},
        )
        return [Notification.from_api(item) for item in body.get("notifications") or []]

    def clear(self, *, receiver: str | None = None) -> None:
        """Forget the notifications received (all, or only those of ``receiver``)."""
        self._request("DELETE", "/api/notifications", params={"receiver": receiver})

    def ready(self) -> bool:
        """True when the sink answers ``/ready`` with 200; False otherwise, never raises."""
        return self._probe("/ready")

    def wait_for(
        self,
        predicate: Callable[[Notification], bool] | None = None,
        *,
        receiver: str | None = None,
        kind: NotificationKind | None = None,
        alertname: str | None = None,
        status: Literal["firing", "resolved"] | None = None,
        since: float | None = None,
        count: int = 1,
        timeout: float = 30.0,
        interval: float = 0.2,
    ) -> list[Notification]:
        """Poll until ``count`` notifications match every condition given; return those.

        Raises:
            LabError: the timeout passed; the message lists what did arrive.
        """

        def matches(note: Notification) -> bool:
            if alertname is not None and alertname not in note.alertnames:
                return False
            if status is not None and note.status != status:
                return False
            return predicate is None or predicate(note)

        def fetch() -> list[Notification]:
            return self.notifications(receiver=receiver, kind=kind, since=since)

        def describe(last: list[Notification] | None) -> str:
            wanted = ", ".join(
                f"{key}={value!r}"
                for key, value in (
                    ("receiver", receiver),
                    ("kind", kind),
                    ("alertname", alertname),
                    ("status", status),
                    ("since", since),
                )
                if value is not None
            )
            wanted = (wanted or "any notification") + (" and the predicate" if predicate else "")
            if last is None:
                arrived = "nothing could be read"
            elif not last:
                arrived = "nothing arrived"
            else:
                shown = "; ".join(n.describe() for n in last[-10:])
                arrived = f"{len(last)} arrived: {shown}"
            return (
                f"expected {count} notification(s) matching {wanted} at {self.base_url}; "
                f"{arrived}. Hint: check the alert fires (`lab doctor`, Prometheus /alerts), "
                "Alertmanager's route and receiver, and its group_wait; or raise timeout=."
            )

        found = poll(
            fetch,
            lambda notes: sum(map(matches, notes)) >= count,
            timeout=timeout,
            interval=interval,
            describe=describe,
        )
        return [n for n in found if matches(n)]
