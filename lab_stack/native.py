"""The native backend: each component a local process on 127.0.0.1, in its own process group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from lab_stack.components import ComponentSpec
from lab_stack.errors import LabError
from lab_stack.settings import HOST, Settings
from lab_stack.state import ComponentState

__all__ = ["NativeBackend", "NativePlacement"]


@dataclass
class NativePlacement:
    """Placement of the native backend: loopback ports, folders under ``LAB_HOME``."""

    settings: Settings
    ports: dict[str, dict[str, int]]
    listen_host: str = HOST

    def view_from(self, component: str) -> NativePlacement:
        return self  # every process shares the host's loopback

    def has(self, component: str) -> bool:
        return component in self.ports

    def port(self, component: str, port: str) -> int:
        try:
            return self.ports[component][port]
        except KeyError:
            raise LabError(
                f"no port {port!r} is assigned to {component!r}. "
                "Hint: is the component part of this stack? See `lab status`."
            ) from None

    def peer(self, component: str, port: str) -> str:
        return f"{HOST}:{self.port(component, port)}"

    def external_url(self, component: str, port: str) -> str:
        return f"http://{HOST}:{self.port(component, port)}"

    def config_dir(self, component: str) -> str:
        return str(self.settings.config_dir / component)

    def data_dir(self, component: str) -> str:
        return str(self.settings.data_dir / component)

    def service_logs_dir(self) -> str:
        return str(self.settings.logs_dir / "services")


class NativeBackend:
    """Starts, checks and stops component processes."""

    name = "native"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def command(self, spec: ComponentSpec, placement: NativePlacement) -> list[str]:
        """The full argv of ``spec`` (binary or ``python -m``)."""
        real = spec.real.find() if spec.real is not None else None
        if real is not None and spec.real_command is not None:
            return [real, *spec.real_command(placement)]
        args = spec.command(placement)
        if spec.module:
            return [sys.executable, "-m", spec.module, *args]
        assert spec.binary is not None, spec.name
        return [spec.binary.require(), *args]

    def start(
        self, spec: ComponentSpec, placement: NativePlacement, record: ComponentState
    ) -> None:
        """Start ``spec`` in a new process group, appending to its log; fills ``record``."""
        argv = self.command(spec, placement)
        Path(placement.data_dir(spec.name)).mkdir(parents=True, exist_ok=True)
        log_path = self.settings.logs_dir / f"{spec.name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(log_path, "ab") as log:
            log.write(
                f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(argv)}\n".encode()
            )
            log.flush()
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own session and process group: `down` kills the group
                cwd=placement.data_dir(spec.name),
                env=env,
            )
        record.pid = process.pid
        record.create_time = psutil.Process(process.pid).create_time()
        record.command = argv
        record.log = str(log_path)
        # The Popen object is dropped on purpose: the process outlives this Python process.
        process.returncode = 0  # keep Popen.__del__ from warning about a still-running child

    def is_alive(self, record: ComponentState) -> bool:
        """True when the recorded process still runs (and is the same process, not a reused PID)."""
        if record.pid is None:
            return False
        try:
            process = psutil.Process(record.pid)
            if (
                record.create_time is not None
                and abs(process.create_time() - record.create_time) > 0.5
            ):
                return False
            return process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def death_reason(self, record: ComponentState) -> str | None:
        """None while the process lives, else a short reason."""
        if self.is_alive(record):
            return None
        return f"process {record.pid} exited"

    def stop(self, record: ComponentState, *, timeout: float = 5.0) -> None:
        """Stop the component's whole process group: SIGTERM, then SIGKILL after ``timeout``."""
        if record.pid is None or not self.is_alive(record):
            _reap(record.pid)
            return
        try:
            pgid = os.getpgid(record.pid)
        except ProcessLookupError:
            return
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _group_alive(pgid):
                break
            _reap(record.pid)
            time.sleep(0.05)
        else:
            _signal_group(pgid, signal.SIGKILL)
            time.sleep(0.05)
        _reap(record.pid)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    for process in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


def _reap(pid: int | None) -> None:
    """Collect the exit status of our own child, if it was one, so no zombie lingers."""
    if pid is None:
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
