"""Fixtures for the notification sinks' tests: a real sinks process on free ports."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from lab_stack.ports import free_port


@dataclass
class Sinks:
    """A running sinks process."""

    proc: subprocess.Popen[bytes]
    http_port: int
    smtp_port: int
    data_dir: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)


def start_sinks(
    data_dir: Path, http_port: int | None = None, smtp_port: int | None = None
) -> Sinks:
    """Start ``python -m lab_stack.sinks`` and wait until ``/ready`` answers."""
    http_port = http_port or free_port()
    smtp_port = smtp_port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / f"sinks-{http_port}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lab_stack.sinks",
                "--host",
                "127.0.0.1",
                "--http-port",
                str(http_port),
                "--smtp-port",
                str(smtp_port),
                "--data-dir",
                str(data_dir),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    sinks = Sinks(proc, http_port, smtp_port, data_dir, log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sinks exited with {proc.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"{sinks.url}/ready", timeout=1).status_code == 200:
                return sinks
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    sinks.stop(signal.SIGKILL)
    raise RuntimeError(f"sinks not ready within 20 s: {log.read_text()}")


@pytest.fixture(scope="module")
def sinks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sinks]:
    """One sinks process shared by a test module (tests use distinct receiver names)."""
    running = start_sinks(tmp_path_factory.mktemp("sinks") / "data")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def client(sinks: Sinks) -> Iterator[httpx.Client]:
    """An HTTP client on the shared sinks."""
    with httpx.Client(base_url=sinks.url, timeout=10) as c:
        yield c


@pytest.fixture
def launch_sinks() -> Iterator[Callable[..., Sinks]]:
    """Start sinks processes on demand (for restart tests); all are stopped at teardown."""
    started: list[Sinks] = []

    def launch(data_dir: Path) -> Sinks:
        running = start_sinks(data_dir)
        started.append(running)
        return running

    try:
        yield launch
    finally:
        for running in started:
            running.stop(signal.SIGKILL)
