"""Typed client for the parts of Grafana's HTTP API graders read: health, datasources, dashboards.

Example:
    >>> from lab_stack.clients import GrafanaClient
    >>> grafana = GrafanaClient("http://127.0.0.1:3000", auth=("admin", "admin"))  # doctest: +SKIP
    >>> [d["uid"] for d in grafana.search("model")]  # doctest: +SKIP
    ['ml-service']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from lab_stack.clients._http import BaseClient
from lab_stack.errors import ClientError

__all__ = ["GrafanaClient"]


class GrafanaClient(BaseClient):
    """Client for one Grafana; pass ``auth=("admin", "admin")`` or an API token header."""

    backend: ClassVar[str] = "Grafana"
    component: ClassVar[str] = "grafana"

    def _status_hint(self, status: int, query: str | None, detail: str) -> str:
        if status in (401, 403):
            return (
                "Grafana refused the credentials; pass auth=(user, password) (the lab's Grafana "
                "uses admin/admin) or headers={'Authorization': 'Bearer <token>'}."
            )
        return super()._status_hint(status, query, detail)

    def _not_found_hint(self, what: str) -> str:
        return (
            f"no {what} is provisioned; check the uid in the JSON/YAML file and that the "
            "provisioning folder is mounted (`lab logs grafana` shows provisioning errors)."
        )

    def health(self) -> dict[str, Any]:
        """``/api/health``: ``{"commit", "database", "version"}``."""
        found: dict[str, Any] = self._get_json("/api/health")
        return found

    def ready(self) -> bool:
        """True when ``/api/health`` answers 200 with ``database: ok``; never raises."""
        try:
            return self.health().get("database") == "ok"
        except ClientError:
            return False

    def datasources(self) -> list[dict[str, Any]]:
        """Every datasource (``uid``, ``name``, ``type``, ``url``, ``jsonData``, ...)."""
        found: list[dict[str, Any]] = self._get_json("/api/datasources")
        return found

    def datasource(self, uid: str) -> dict[str, Any]:
        """One datasource by uid; :class:`~lab_stack.errors.NotFound` when there is none."""
        found: dict[str, Any] = self._get_json(
            f"/api/datasources/uid/{uid}", not_found=f"datasource uid {uid!r}"
        )
        return found

    def datasource_health(self, uid: str) -> dict[str, Any]:
        """Grafana's test of a datasource: ``{"status": "OK"|"ERROR", "message": ...}``."""
        response = self._request(
            "GET",
            f"/api/datasources/uid/{uid}/health",
            not_found=f"datasource uid {uid!r}",
            # Grafana answers a failing check with 400 and the same JSON shape.
            ok_statuses=(400,),
        )
        found: dict[str, Any] = self._json(response)
        return found

    def dashboard(self, uid: str) -> dict[str, Any]:
        """``{"dashboard": {...}, "meta": {...}}`` of one dashboard; NotFound when missing."""
        found: dict[str, Any] = self._get_json(
            f"/api/dashboards/uid/{uid}", not_found=f"dashboard uid {uid!r}"
        )
        return found

    def search(
        self,
        query: str = "",
        *,
        type: str | None = "dash-db",
        tags: Sequence[str] = (),
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Dashboards (and folders, with ``type=None``) whose title matches ``query``."""
        params = {
            "query": query or None,
            "type": type,
            "tag": list(tags) or None,
            "limit": limit,
        }
        found: list[dict[str, Any]] = self._get_json("/api/search", params=params)
        return found
