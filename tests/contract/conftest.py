"""Fixtures of the contract suite: the Loki and Tempo under test.

By default the suite runs against the Loki and Tempo of each backend's session stack in turn
(``native``: the embedded servers as processes; ``docker``: the containers, which run the real
Grafana images where Docker pulls them and the embedded servers' image under podman). Environment
variables point it at any running servers instead, e.g. a real Loki 2.9.3 / Tempo 2.3.1:
``LAB_CONTRACT_LOKI_URL``, ``LAB_CONTRACT_TEMPO_URL``, ``LAB_CONTRACT_TEMPO_OTLP_HTTP``,
``LAB_CONTRACT_TEMPO_OTLP_GRPC`` (all three Tempo ones or none).
"""

from __future__ import annotations

import os
import time

import httpx
import pytest

import lab_stack

_TEMPO_VARS = (
    "LAB_CONTRACT_TEMPO_URL",
    "LAB_CONTRACT_TEMPO_OTLP_HTTP",
    "LAB_CONTRACT_TEMPO_OTLP_GRPC",
)


def _wait_ready(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready after {timeout}s")


def _backends(variable: str) -> list[str]:
    # Only where a variable names an external server does the suite run once, against it.
    return ["external"] if os.environ.get(variable) else ["native", "docker"]


def _stack(request: pytest.FixtureRequest) -> lab_stack.Stack:
    name = "stack" if request.param == "native" else "docker_stack"
    running: lab_stack.Stack = request.getfixturevalue(name)
    return running


@pytest.fixture(scope="session", params=_backends("LAB_CONTRACT_LOKI_URL"))
def loki_url(request: pytest.FixtureRequest) -> str:
    """Base URL of the Loki the contract tests talk to."""
    if request.param == "external":
        url = os.environ["LAB_CONTRACT_LOKI_URL"].rstrip("/")
        _wait_ready(url)
        return url
    return _stack(request).url("loki")


@pytest.fixture(scope="session", params=_backends("LAB_CONTRACT_TEMPO_URL"))
def _tempo_endpoints(request: pytest.FixtureRequest) -> tuple[str, str, str]:
    """(HTTP API URL, OTLP/HTTP base URL, OTLP/gRPC host:port) of the Tempo under test."""
    if request.param == "external":
        given = [os.environ.get(n, "") for n in _TEMPO_VARS]
        if not all(given):
            raise pytest.UsageError(f"set all of {', '.join(_TEMPO_VARS)} or none of them")
        _wait_ready(given[0].rstrip("/"))
        return given[0].rstrip("/"), given[1].rstrip("/"), given[2]
    stack = _stack(request)
    grpc = stack.url("tempo_otlp_grpc").split("://", 1)[-1]
    return stack.url("tempo"), stack.url("tempo_otlp_http"), grpc


@pytest.fixture(scope="session")
def tempo_url(_tempo_endpoints: tuple[str, str, str]) -> str:
    """Tempo's HTTP API, e.g. ``http://127.0.0.1:3200``."""
    return _tempo_endpoints[0]


@pytest.fixture(scope="session")
def tempo_otlp_http_url(_tempo_endpoints: tuple[str, str, str]) -> str:
    """OTLP/HTTP base URL, e.g. ``http://127.0.0.1:4318`` (``/v1/traces`` is appended)."""
    return _tempo_endpoints[1]


@pytest.fixture(scope="session")
def tempo_otlp_grpc_endpoint(_tempo_endpoints: tuple[str, str, str]) -> str:
    """OTLP/gRPC ``host:port``, e.g. ``127.0.0.1:4317``."""
    return _tempo_endpoints[2]
