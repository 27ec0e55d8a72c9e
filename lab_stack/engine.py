"""A container engine where Docker is absent: podman's Docker-compatible API on a local socket.

``lab engine up`` starts ``podman system service`` on a socket under ``LAB_ENGINE_DIR`` with the
project's own ``containers.conf`` (never the system's); the docker backend then talks to it. With a
real Docker engine present (``DOCKER_HOST`` or the default socket answers) none of this is used.

:func:`activate` says which Docker API to use and sets testcontainers up for podman (no Ryuk: the
stack removes its own containers by label; the host override and the ``docker_host`` connection
mode podman needs), without touching the process environment.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx

from lab_stack.errors import BinaryNotFound, EngineUnavailable
from lab_stack.settings import Settings

__all__ = ["CONTAINERS_CONF", "Engine", "activate", "podman_env"]

CONTAINERS_CONF = Path(__file__).resolve().parent / "containers.conf"


def podman_env() -> dict[str, str]:
    """Environment for every podman command of the project (its own containers.conf)."""
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


class Engine:
    """The project's podman API service."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.directory = settings.engine_dir
        self.socket = self.directory / "podman.sock"
        self.pid_file = self.directory / "podman.pid"
        self.log = self.directory / "podman.log"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    def answers(self) -> bool:
        """True when the service answers Docker's ``/_ping`` on its socket."""
        if not self.socket.exists():
            return False
        try:
            transport = httpx.HTTPTransport(uds=str(self.socket))
            # A busy engine can take seconds to answer; a missing one refuses at once.
            with httpx.Client(transport=transport, timeout=10.0) as client:
                return client.get("http://podman/_ping").status_code == 200
        except httpx.HTTPError:
            return False

    def up(self, *, timeout: float = 30.0) -> str:
        """Start the service unless it answers already; return its ``DOCKER_HOST``."""
        if self.answers():
            return self.docker_host
        podman = shutil.which("podman")
        if podman is None:
            raise BinaryNotFound(
                "podman is not installed. Hint: `make setup` installs it (apt-get install podman runc "
                "netavark aardvark-dns), or use the native backend."
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        with open(self.log, "ab") as log:
            process = subprocess.Popen(
                [podman, "system", "service", "--time=0", self.docker_host],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=podman_env(),
            )
        process.returncode = 0  # it outlives us on purpose; keep Popen.__del__ quiet
        self.pid_file.write_text(str(process.pid))
        deadline = time.monotonic() + timeout
        while not self.answers():
            if time.monotonic() > deadline:
                raise EngineUnavailable(
                    f"podman's API did not answer on {self.socket} within {timeout:.0f} s. "
                    f"Hint: read {self.log}; `podman info` shows what podman thinks is wrong."
                )
            time.sleep(0.1)
        return self.docker_host

    def down(self) -> bool:
        """Stop the service; True when one was running."""
        try:
            pid = int(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(os.getpgid(pid), signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
                os.waitpid(pid, os.WNOHANG)
            except (ProcessLookupError, ChildProcessError):
                break
            time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        self.socket.unlink(missing_ok=True)
        return True


def activate(settings: Settings) -> str | None:
    """The ``DOCKER_HOST`` this process's Docker clients should use, with testcontainers set up.

    ``settings.docker_host`` when set, else the project's podman service when it answers, else None
    (docker-py's default socket). The caller passes the host to its clients explicitly (nothing is
    written to ``os.environ``, so child processes such as notebook kernels are not steered to an
    engine behind their back). For podman, testcontainers runs without Ryuk (the stack removes its
    containers by label) and with the host override and connection mode podman needs.
    """
    engine = Engine(settings)
    if settings.docker_host:
        host = settings.docker_host
        podman = host == engine.docker_host
    elif engine.answers():
        host, podman = engine.docker_host, True
    else:
        return None
    if podman:
        _configure_testcontainers_for_podman()
    return host


def _configure_testcontainers_for_podman() -> None:
    """What ``TESTCONTAINERS_RYUK_DISABLED``, ``..._HOST_OVERRIDE`` and ``..._CONNECTION_MODE`` set."""
    from testcontainers.core.config import ConnectionMode, testcontainers_config

    testcontainers_config.ryuk_disabled = True
    testcontainers_config.tc_host_override = "127.0.0.1"
    testcontainers_config.connection_mode_override = ConnectionMode.docker_host
