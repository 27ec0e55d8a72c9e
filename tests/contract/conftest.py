"""Fixtures of the contract suite: the base URL of the Loki under test.

``LAB_CONTRACT_LOKI_URL`` points the suite at any running Loki (for instance a real 2.9.3 under the
docker backend); without it, an embedded Loki is started on a free port for the session.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"Loki exited with {proc.returncode} before becoming ready")
        try:
            if httpx.get(f"{url}/ready", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"Loki at {url} not ready after {timeout}s")


@pytest.fixture(scope="session")
def loki_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of the Loki the contract tests talk to."""
    external = os.environ.get("LAB_CONTRACT_LOKI_URL")
    if external:
        url = external.rstrip("/")
        _wait_ready(url, None)
        yield url
        return
    data: Path = tmp_path_factory.mktemp("contract-loki")
    port = _free_port()
    log = open(data / "loki.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lab_stack.embedded.loki",
            "--port",
            str(port),
            "--data-dir",
            str(data / "segments"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
