"""A recording fake HTTP API for client unit tests (faking at the transport, per STYLE.md §6)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx

Reply = Callable[[httpx.Request], httpx.Response]


class FakeAPI:
    """Routes (method, path) to canned responses and records every request it receives."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self._routes: dict[tuple[str, str], Reply] = {}

    def on(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        text: str | None = None,
        status: int = 200,
        reply: Reply | None = None,
    ) -> FakeAPI:
        """Answer ``method path`` with a JSON body, a text body, or a custom reply function."""
        if reply is None:

            def reply(request: httpx.Request) -> httpx.Response:
                if text is not None:
                    return httpx.Response(status, text=text)
                if json_body is None:
                    return httpx.Response(status)
                return httpx.Response(status, json=json_body)

        self._routes[(method, path)] = reply
        return self

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self._routes.get((request.method, request.url.path))
        if reply is None:
            return httpx.Response(404, text=f"fake: no route {request.method} {request.url.path}")
        return reply(request)

    @property
    def transport(self) -> httpx.MockTransport:
        """An httpx transport that serves this fake."""
        return httpx.MockTransport(self)

    @property
    def last(self) -> httpx.Request:
        """The last request received."""
        return self.requests[-1]


def params(request: httpx.Request) -> dict[str, list[str]]:
    """The query-string parameters of a request, each as the list of its values."""
    return parse_qs(request.url.query.decode(), keep_blank_values=True)


def form(request: httpx.Request) -> dict[str, list[str]]:
    """The form-encoded body of a request, each key as the list of its values."""
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    return parse_qs(request.content.decode(), keep_blank_values=True)


def body(request: httpx.Request) -> Any:
    """The JSON body of a request."""
    return json.loads(request.content)


def closed_port_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens (a port the OS just handed out, now closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def prom_ok(data: Any) -> dict[str, Any]:
    """A Prometheus-style success envelope."""
    return {"status": "success", "data": data}
