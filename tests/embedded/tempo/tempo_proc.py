"""A real ``python -m lab_stack.embedded.tempo`` process for tests (a unique module name)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from lab_stack.ports import free_port


@dataclass
class TempoProcess:
    """A running embedded Tempo and its URLs."""

    data_dir: Path
    extra_args: list[str] = field(default_factory=list)
    http_port: int = field(default_factory=free_port)
    otlp_http_port: int = field(default_factory=free_port)
    otlp_grpc_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def otlp_http_url(self) -> str:
        return f"http://127.0.0.1:{self.otlp_http_port}"

    @property
    def otlp_grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.otlp_grpc_port}"

    def start(self, timeout: float = 20.0) -> None:
        """Start the process and wait until ``/ready`` answers 200."""
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-tempo.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed when the process is stopped
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lab_stack.embedded.tempo",
                "--http-port",
                str(self.http_port),
                "--otlp-http-port",
                str(self.otlp_http_port),
                "--otlp-grpc-port",
                str(self.otlp_grpc_port),
                "--data-dir",
                str(self.data_dir),
                *self.extra_args,
            ],
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"embedded Tempo exited with {self.proc.returncode}: {self.logs()}"
                )
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    self._wait_grpc(deadline)
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"embedded Tempo not ready after {timeout}s: {self.logs()}")

    def _wait_grpc(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.otlp_grpc_port)) == 0:
                    return
            time.sleep(0.05)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL the process (no shutdown code runs)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int | None:
        """SIGTERM the process and wait; return its exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode
