"""The native backend: components as local processes on 127.0.0.1, each in its own process group.

The Go binaries run one process each. The embedded Python servers (Loki, Tempo, the log shipper,
the notification sinks, the GPU source; see :func:`lab_stack.embedded.host.hostable`) share one host process
(:mod:`lab_stack.embedded.host`), so that their common imports are paid once: each is still
started, checked and stopped on its own, on its own ports, with its own store and log file. Their
records carry the host's PID; a failure of one ends the host, and the next ``up`` restarts them all.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil

from lab_stack.components import ComponentSpec
from lab_stack.embedded.host import hostable
from lab_stack.errors import LabError
from lab_stack.settings import HOST, Settings
from lab_stack.state import ComponentState

__all__ = ["HOST_MODULE", "NativeBackend", "NativePlacement"]

#: The module of the process that hosts the embedded Python components.
HOST_MODULE = "lab_stack.embedded.host"


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

    def hosted(self, spec: ComponentSpec) -> bool:
        """True when ``spec`` runs inside the shared host process rather than as its own process."""
        if not hostable(spec.module):
            return False
        return spec.real is None or spec.real.find() is None

    def start(
        self, spec: ComponentSpec, placement: NativePlacement, record: ComponentState
    ) -> None:
        """Start ``spec`` in a new process group, appending to its log; fills ``record``.

        A hostable component is handed to the running host process (one is started if none runs).
        """
        Path(placement.data_dir(spec.name)).mkdir(parents=True, exist_ok=True)
        log_path = self.settings.logs_dir / f"{spec.name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.hosted(spec):
            self._start_hosted(spec, placement, record, log_path)
            return
        argv = self.command(spec, placement)
        process = self._spawn(argv, log_path, cwd=placement.data_dir(spec.name))
        record.pid = process.pid
        record.create_time = psutil.Process(process.pid).create_time()
        record.command = argv
        record.log = str(log_path)

    def _spawn(self, argv: list[str], log_path: Path, *, cwd: str) -> subprocess.Popen[bytes]:
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
                cwd=cwd,
                env=env,
            )
        # The Popen object is dropped on purpose: the process outlives this Python process.
        process.returncode = 0  # keep Popen.__del__ from warning about a still-running child
        return process

    # --- the host process of the embedded components ------------------------------------------
    @property
    def _hosts_dir(self) -> Path:
        return self.settings.home / "hosts"

    def _current_host(self) -> dict[str, object] | None:
        """The recorded host process when it runs and accepts components, else None.

        A host that is shutting down (``closing``) is waited for, and killed after the stop
        timeout, so that a new one can bind the same ports.
        """
        try:
            current: dict[str, object] = json.loads((self._hosts_dir / "current.json").read_text())
        except (OSError, ValueError):
            return None
        pid, created = current.get("pid"), current.get("create_time")
        if not isinstance(pid, int) or not _same_process(pid, created):
            return None
        if (Path(str(current["dir"])) / "closing").exists():
            self._wait_gone(pid, created, timeout=STOP_TIMEOUT_S)
            return None
        return current

    def _start_hosted(
        self,
        spec: ComponentSpec,
        placement: NativePlacement,
        record: ComponentState,
        log_path: Path,
    ) -> None:
        assert spec.module is not None
        want = {"module": spec.module, "argv": spec.command(placement), "log": str(log_path)}
        host = self._current_host()
        if host is None:
            directory = self._hosts_dir / f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
            (directory / "want").mkdir(parents=True)
            _write_json(directory / "want" / f"{spec.name}.json", want)
            argv = [sys.executable, "-m", HOST_MODULE, "--dir", str(directory)]
            process = self._spawn(argv, self.settings.logs_dir / "host.log", cwd=str(directory))
            host = {
                "pid": process.pid,
                "create_time": psutil.Process(process.pid).create_time(),
                "dir": str(directory),
                "command": argv,
            }
            _write_json(self._hosts_dir / "current.json", host)
            for old in self._hosts_dir.iterdir():  # folders of hosts that are gone
                if old.is_dir() and old != directory:
                    shutil.rmtree(old, ignore_errors=True)
        else:
            _write_json(Path(str(host["dir"])) / "want" / f"{spec.name}.json", want)
        with open(log_path, "ab") as log:
            log.write(
                f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting in host {host['pid']}: "
                f"python -m {spec.module} {' '.join(want['argv'])}\n".encode()
            )
        record.pid = int(str(host["pid"]))
        record.create_time = float(str(host["create_time"]))
        record.command = [str(a) for a in host["command"]]  # type: ignore[attr-defined]
        record.log = str(log_path)

    @staticmethod
    def _host_dir(record: ComponentState) -> Path | None:
        """The control folder of the host serving ``record``, or None when it has its own process."""
        command = record.command
        if HOST_MODULE not in command or "--dir" not in command:
            return None
        index = command.index("--dir") + 1
        return Path(command[index]) if index < len(command) else None

    def _wait_gone(self, pid: int, created: object, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while _same_process(pid, created) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.02)
        if _same_process(pid, created):
            with contextlib.suppress(ProcessLookupError):
                _signal_group(os.getpgid(pid), signal.SIGKILL)
            time.sleep(0.05)
        _reap(pid)

    def is_alive(self, record: ComponentState) -> bool:
        """True when the recorded process still runs (and is the same process, not a reused PID).

        A hosted component is alive while its host runs and still serves it.
        """
        if record.pid is None or not _same_process(record.pid, record.create_time):
            return False
        host_dir = self._host_dir(record)
        if host_dir is None:
            return True
        return (host_dir / "want" / f"{record.name}.json").exists() and not (
            host_dir / "closing"
        ).exists()

    def death_reason(self, record: ComponentState) -> str | None:
        """None while the process lives, else a short reason."""
        if self.is_alive(record):
            return None
        host_dir = self._host_dir(record)
        if host_dir is not None:
            log = self.settings.logs_dir / "host.log"
            return f"its host process {record.pid} stopped serving it; see {log}"
        return f"process {record.pid} exited"

    def stop(self, record: ComponentState, *, timeout: float = 5.0) -> None:
        """Stop the component's whole process group: SIGTERM, then SIGKILL after ``timeout``.

        A hosted component is asked to stop on its own; the host exits with its last component.
        """
        host_dir = self._host_dir(record)
        if host_dir is not None and record.pid is not None and self.is_alive(record):
            self._stop_hosted(record, host_dir, timeout=timeout)
            return
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

    def _stop_hosted(self, record: ComponentState, host_dir: Path, *, timeout: float) -> None:
        assert record.pid is not None
        (host_dir / "want" / f"{record.name}.json").unlink(missing_ok=True)
        serving = host_dir / "serving" / record.name
        deadline = time.monotonic() + timeout
        while serving.exists() and _same_process(record.pid, record.create_time):
            if time.monotonic() > deadline:
                # It did not stop in time: end the host (its other components restart on `up`).
                (host_dir / "closing").touch()
                self._wait_gone(record.pid, record.create_time, timeout=0)
                return
            time.sleep(0.02)
        if not any((host_dir / "want").glob("*.json")):
            self._wait_gone(record.pid, record.create_time, timeout=timeout)


STOP_TIMEOUT_S = 10.0


def _same_process(pid: int, created: object) -> bool:
    try:
        process = psutil.Process(pid)
        if isinstance(created, (int, float)) and abs(process.create_time() - created) > 0.5:
            return False
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _write_json(path: Path, document: object) -> None:
    """Write ``path`` atomically, so that a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(fd, "w") as handle:
        json.dump(document, handle)
    os.replace(tmp, path)


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
