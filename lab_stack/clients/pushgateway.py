"""Typed client for the Pushgateway's read and delete API (``/api/v1/metrics``, ``/metrics/job``).

Pushing is :func:`prometheus_client.push_to_gateway`'s job; this client lists and deletes groups.

Example:
    >>> from lab_stack.clients import PushgatewayClient
    >>> pgw = PushgatewayClient("http://127.0.0.1:9091")  # doctest: +SKIP
    >>> [g.job for g in pgw.metrics()]  # doctest: +SKIP
    ['batch_train']
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote

from lab_stack.clients._http import BaseClient

__all__ = ["PushGroup", "PushgatewayClient", "group_path"]

#: Keys of a group object in ``/api/v1/metrics`` that are not metric families.
_GROUP_KEYS = frozenset({"labels", "last_push_successful"})


@dataclass(frozen=True)
class PushGroup:
    """One pushed group: grouping labels, whether the last push succeeded, its metric families."""

    labels: Mapping[str, str] = field(default_factory=dict)
    last_push_successful: bool = True
    families: Mapping[str, Any] = field(default_factory=dict)

    @property
    def job(self) -> str:
        """The group's ``job`` label."""
        return self.labels.get("job", "")

    @property
    def metric_names(self) -> list[str]:
        """Names of the metric families in the group (including ``push_time_seconds``)."""
        return sorted(self.families)

    def values(self, name: str) -> list[float]:
        """The sample values of metric family ``name`` (for counters and gauges)."""
        family = self.families.get(name) or {}
        return [float(m["value"]) for m in family.get("metrics", []) if "value" in m]

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> PushGroup:
        """Build from one element of ``/api/v1/metrics``'s ``data``."""
        return cls(
            labels=dict(raw.get("labels", {})),
            last_push_successful=bool(raw.get("last_push_successful", True)),
            families={k: v for k, v in raw.items() if k not in _GROUP_KEYS},
        )


def _escape(name: str, value: str) -> str:
    # Same scheme as prometheus_client's push_to_gateway: base64 for '/', ' ' and empty values.
    if value == "":
        return f"{name}@base64/="
    if "/" in value or " " in value:
        return f"{name}@base64/" + base64.urlsafe_b64encode(value.encode()).decode()
    return f"{name}/{quote(value, safe='')}"


def group_path(job: str, grouping_key: Mapping[str, str] | None = None) -> str:
    """The ``/metrics/job/<job>/<label>/<value>`` path of a group, escaped for the Pushgateway."""
    parts = [_escape("job", job)]
    parts.extend(_escape(name, value) for name, value in (grouping_key or {}).items())
    return "/metrics/" + "/".join(parts)


class PushgatewayClient(BaseClient):
    """Client for one Pushgateway: list the pushed groups, delete one, check readiness."""

    backend: ClassVar[str] = "Pushgateway"
    component: ClassVar[str] = "pushgateway"

    def metrics(self) -> list[PushGroup]:
        """Every pushed group with its metric families (``GET /api/v1/metrics``)."""
        data = self._data("GET", "/api/v1/metrics")
        return [PushGroup.from_api(item) for item in data or []]

    def delete_group(self, job: str, grouping_key: Mapping[str, str] | None = None) -> None:
        """Delete the group ``job`` (+ ``grouping_key``), as ``delete_from_gateway`` does."""
        path = group_path(job, grouping_key)
        self._request("DELETE", path, query=path)

    def ready(self) -> bool:
        """True when the Pushgateway answers ``/-/ready`` with 200; False otherwise."""
        return self._probe("/-/ready")

    def healthy(self) -> bool:
        """True when the Pushgateway answers ``/-/healthy`` with 200; False otherwise."""
        return self._probe("/-/healthy")
