"""Typed client for the Alertmanager API v2 (``/api/v2/...``) and its lifecycle endpoints.

Example:
    >>> from lab_stack.clients import AlertmanagerClient
    >>> am = AlertmanagerClient("http://127.0.0.1:9093")  # doctest: +SKIP
    >>> sid = am.create_silence({"alertname": "Noisy"}, duration=600)  # doctest: +SKIP
    >>> am.delete_silence(sid)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from lab_stack.clients._http import BaseClient

__all__ = ["AlertmanagerClient", "Matcher"]


@dataclass(frozen=True)
class Matcher:
    """One silence matcher: ``name`` (=, !=, =~ or !~) ``value``."""

    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    def to_api(self) -> dict[str, Any]:
        """The API v2 JSON form (``name``, ``value``, ``isRegex``, ``isEqual``)."""
        return {
            "name": self.name,
            "value": self.value,
            "isRegex": self.is_regex,
            "isEqual": self.is_equal,
        }

    def __str__(self) -> str:
        op = (
            ("=~" if self.is_regex else "=") if self.is_equal else ("!~" if self.is_regex else "!=")
        )
        return f"{self.name}{op}{self.value!r}"


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class AlertmanagerClient(BaseClient):
    """Client for one Alertmanager: alerts, groups, silences, status and receivers.

    Example:
        >>> am = AlertmanagerClient("http://127.0.0.1:9093")  # doctest: +SKIP
        >>> [a["labels"]["alertname"] for a in am.alerts(silenced=False)]  # doctest: +SKIP
        ['AlwaysFiring']
    """

    backend: ClassVar[str] = "Alertmanager"
    component: ClassVar[str] = "alertmanager"
    query_language: ClassVar[str] = "matcher"

    def _status_hint(self, status: int, query: str | None, detail: str) -> str:
        if status in (400, 422):
            return (
                'check the matchers (name="value", name=~"regex") and the alert or silence '
                "fields (labels, startsAt < endsAt, createdBy, comment)."
            )
        if "failed to reload config" in detail or "reload" in detail.lower():
            return "run `amtool check-config` on alertmanager.yml; the old configuration stays."
        return super()._status_hint(status, query, detail)

    def _means_not_found(self, status: int, detail: str) -> bool:
        # Alertmanager 0.25 answers DELETE of an unknown silence id with 500 "silence not found".
        return status == 404 or (status == 500 and "not found" in detail)

    @staticmethod
    def _filters(
        *,
        active: bool | None,
        silenced: bool | None,
        inhibited: bool | None,
        unprocessed: bool | None,
        filter: Sequence[str],
        receiver: str | None,
    ) -> dict[str, bool | str | list[str] | None]:
        return {
            "active": active,
            "silenced": silenced,
            "inhibited": inhibited,
            "unprocessed": unprocessed,
            "filter": list(filter) or None,
            "receiver": receiver,
        }

    def alerts(
        self,
        *,
        active: bool | None = None,
        silenced: bool | None = None,
        inhibited: bool | None = None,
        unprocessed: bool | None = None,
        filter: Sequence[str] = (),
        receiver: str | None = None,
    ) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds; ``filter`` takes matchers like ``'alertname="X"'``."""
        params = self._filters(
            active=active,
            silenced=silenced,
            inhibited=inhibited,
            unprocessed=unprocessed,
            filter=filter,
            receiver=receiver,
        )
        found: list[dict[str, Any]] = self._get_json(
            "/api/v2/alerts", params=params, query=" ".join(filter) or None
        )
        return found

    def alert_groups(
        self,
        *,
        active: bool | None = None,
        silenced: bool | None = None,
        inhibited: bool | None = None,
        filter: Sequence[str] = (),
        receiver: str | None = None,
    ) -> list[dict[str, Any]]:
        """The alerts grouped by route (``labels``, ``receiver``, ``alerts``)."""
        params = self._filters(
            active=active,
            silenced=silenced,
            inhibited=inhibited,
            unprocessed=None,
            filter=filter,
            receiver=receiver,
        )
        found: list[dict[str, Any]] = self._get_json(
            "/api/v2/alerts/groups", params=params, query=" ".join(filter) or None
        )
        return found

    def post_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """Send alerts as Prometheus does (each needs ``labels``; ``startsAt``/``endsAt`` optional).

        ``datetime`` values of ``startsAt`` and ``endsAt`` are converted to RFC 3339.
        """
        body = []
        for alert in alerts:
            item = dict(alert)
            for key in ("startsAt", "endsAt"):
                if isinstance(item.get(key), datetime):
                    item[key] = _rfc3339(item[key])
            body.append(item)
        self._request("POST", "/api/v2/alerts", json_body=body)

    # -- silences --------------------------------------------------------------------------------

    def silences(self, *, filter: Sequence[str] = ()) -> list[dict[str, Any]]:
        """All silences (``id``, ``status.state``, ``matchers``, ``endsAt``, ...)."""
        found: list[dict[str, Any]] = self._get_json(
            "/api/v2/silences",
            params={"filter": list(filter) or None},
            query=" ".join(filter) or None,
        )
        return found

    def silence(self, silence_id: str) -> dict[str, Any]:
        """One silence by id; :class:`~lab_stack.errors.NotFound` when it does not exist."""
        found: dict[str, Any] = self._get_json(
            f"/api/v2/silence/{silence_id}", not_found=f"silence {silence_id!r}"
        )
        return found

    def create_silence(
        self,
        matchers: Mapping[str, str] | Sequence[Matcher],
        *,
        duration: float | timedelta = 3600.0,
        comment: str = "silenced from the lab",
        created_by: str = "lab_stack",
        starts_at: datetime | None = None,
    ) -> str:
        """Create a silence and return its id; a mapping means equality matchers.

        Args:
            matchers: ``{"alertname": "X"}`` or ``[Matcher("sev", "warn|info", is_regex=True)]``.
            duration: seconds (or a timedelta) from ``starts_at`` (default: now) to the end.
        """
        if isinstance(matchers, Mapping):
            items = [Matcher(name, value) for name, value in matchers.items()]
        else:
            items = list(matchers)
        start = starts_at or datetime.now(UTC)
        length = duration if isinstance(duration, timedelta) else timedelta(seconds=duration)
        body = {
            "matchers": [m.to_api() for m in items],
            "startsAt": _rfc3339(start),
            "endsAt": _rfc3339(start + length),
            "createdBy": created_by,
            "comment": comment,
        }
        response = self._request(
            "POST", "/api/v2/silences", json_body=body, query=", ".join(map(str, items))
        )
        answer = self._json(response)
        return str(answer["silenceID"])

    def delete_silence(self, silence_id: str) -> None:
        """Expire a silence; :class:`~lab_stack.errors.NotFound` when no silence has that id."""
        self._request(
            "DELETE", f"/api/v2/silence/{silence_id}", not_found=f"silence {silence_id!r}"
        )

    # -- status ----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Cluster, version and running configuration (``config.original`` is the YAML text)."""
        found: dict[str, Any] = self._get_json("/api/v2/status")
        return found

    def receivers(self) -> list[str]:
        """The names of the configured receivers."""
        found = self._get_json("/api/v2/receivers")
        return [str(item["name"]) for item in found]

    def reload(self) -> None:
        """Ask Alertmanager to reload its configuration (``POST /-/reload``)."""
        self._request("POST", "/-/reload")

    def ready(self) -> bool:
        """True when Alertmanager answers ``/-/ready`` with 200; False otherwise, never raises."""
        return self._probe("/-/ready")

    def healthy(self) -> bool:
        """True when Alertmanager answers ``/-/healthy`` with 200; False otherwise, never raises."""
        return self._probe("/-/healthy")
