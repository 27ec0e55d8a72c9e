"""Fixtures that run the embedded Loki as a real subprocess on a free port."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from lab_stack.ports import free_port as _free_port


@dataclass
class LokiProcess:
    """An embedded Loki subprocess over a data folder; restartable, killable."""

    data_dir: Path
    extra_args: list[str] = field(default_factory=list)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def start(self, timeout: float = 30.0) -> None:
        self.port = _free_port()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "lab_stack.embedded.loki",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                    *self.extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"embedded Loki exited early:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"embedded Loki not ready:\n{self.log_path.read_text()}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture
def loki_factory(tmp_path: Path) -> Iterator[LokiProcess]:
    """An embedded Loki over a fresh data folder, not yet started; stopped afterwards."""
    lp = LokiProcess(tmp_path / "loki-data")
    try:
        yield lp
    finally:
        lp.stop()


@pytest.fixture(scope="session")
def loki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LokiProcess]:
    """One running embedded Loki shared by the session's server tests."""
    lp = LokiProcess(tmp_path_factory.mktemp("shared-loki") / "data")
    lp.start()
    try:
        yield lp
    finally:
        lp.stop()
