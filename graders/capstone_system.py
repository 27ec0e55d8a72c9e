"""Run a student's completed capstone system against the lab stack: the drills' system under test.

:func:`start_system` takes a capstone folder (what ``solutions/capstone/capstone.ipynb`` writes:
``observability.py``, ``alert_rules.yml``, ``alertmanager.yml``, ``drift_job.py``,
``reference.pkl``) and runs it the way production would, in compressed time:

* the gateway and the feature service, instrumented by the student's
  ``observability.instrument(...)`` hooks, in ONE child process
  (``python -m graders.capstone_system serve ...``), so that a crash, a hang or a global
  OpenTelemetry provider of the student's code cannot hurt the grader; its JSON log file lies in
  the stack's service-log folder, which the stack's shipper sends to Loki, and its spans go to
  the stack's Tempo over OTLP/HTTP;
* a simulated GPU of the grader's own (:class:`ml_service.gpu.SimulatedGPU`, so a leak can be
  injected whatever the stack's GPU source reads);
* Prometheus scrapes the gateway (job ``ml-service``, ``service=NAME``) and the GPU (job
  :data:`graders.ex06_checks.LIVE_GPU_JOB`, ``service=NAME-gpu``); the student's rules are
  applied time-compressed (:func:`graders.ex06_checks.compress_rules`, ``factor``) and their
  Alertmanager configuration rendered for the lab's sinks with second-long grouping;
* ``drift_job.py`` runs on its schedule as a child process; every JSON line it prints is a
  decision (:meth:`System.drift_decisions`).

On leaving the context everything is stopped and the stack restored: targets, rules,
Alertmanager configuration, the drift job's Pushgateway group.

Example:
    >>> with start_system(folder, stack, service="drill-1") as system:   # doctest: +SKIP
    ...     run_traffic(system.gateway_url, scenario="steady", duration_s=5)
    ...     system.drift_decisions()[-1]["drift"]
    False
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx

from graders.errors import GradingError
from graders.ex06_checks import (
    LIVE_GPU_JOB,
    compress_rules,
    render_alertmanager_config,
    sink_addresses,
)
from lab_stack import Stack

__all__ = [
    "DRIFT_JOB",
    "REQUIRED_FILES",
    "SERVICE_JOB",
    "System",
    "check_folder",
    "main",
    "start_system",
]

#: What a completed capstone folder holds (the contract of the capstone notebook).
REQUIRED_FILES = (
    "observability.py",
    "alert_rules.yml",
    "alertmanager.yml",
    "drift_job.py",
    "reference.pkl",
)
#: Scrape job of the student's gateway.
SERVICE_JOB = "ml-service"
#: Pushgateway job the drift job pushes under (grouping key ``service=NAME``).
DRIFT_JOB = "ml_drift_job"


@dataclass
class System:
    """The running system: its URLs, log file and the drift job's decisions so far."""

    service: str
    folder: Path
    gateway_url: str
    feature_url: str
    gpu_url: str
    log_path: Path
    started_at: float
    gpu: Any = field(repr=False, default=None)
    #: the services' and the drift job's stdout/stderr (exist while the context is open)
    serve_log: Path | None = None
    drift_log: Path | None = None
    _decisions: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _drift_output: deque[str] = field(default_factory=lambda: deque(maxlen=20), repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def gpu_service(self) -> str:
        """The ``service`` label of the system's GPU target (``NAME-gpu``)."""
        return f"{self.service}-gpu"

    @property
    def log_selector(self) -> str:
        """The LogQL stream selector of the system's log lines in Loki (the stack's shipper)."""
        # service names are [A-Za-z0-9_-]: only the dot needs escaping (\\. inside the quotes)
        return f'{{job="services", filename=~".*{self.service}\\\\.log"}}'

    def drift_decisions(self) -> list[dict[str, Any]]:
        """The JSON lines the drift job printed so far, in order; each with ``received_at``
        (when the runner read it) added."""
        with self._lock:
            return [dict(d) for d in self._decisions]

    def drift_output(self) -> list[str]:
        """The drift job's last lines that were not JSON decisions (errors, tracebacks)."""
        with self._lock:
            return list(self._drift_output)

    def _read_drift(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").strip()
            if not line:
                continue
            try:
                decision = json.loads(line)
            except ValueError:
                decision = None
            with self._lock:
                if isinstance(decision, dict):
                    decision["received_at"] = time.time()
                    self._decisions.append(decision)
                else:
                    self._drift_output.append(line)


def _child_env(stack: Stack) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "JPY_"))}
    env.update(
        LAB_HOME=str(stack.settings.home),
        LAB_BACKEND=stack.settings.backend,
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(
            [str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep),
    )
    return env


def _stop(proc: subprocess.Popen[bytes] | None, *, timeout_s: float = 8.0) -> None:
    from ml_service.serve import stop_process_group

    stop_process_group(proc, timeout_s=timeout_s)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def _wait_ready(proc: subprocess.Popen[bytes], ready: Path, out: Path, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready.exists():
            with contextlib.suppress(ValueError):
                return json.loads(ready.read_text())
        if proc.poll() is not None:
            raise GradingError(
                f"the capstone services exited with code {proc.returncode} before answering.\n"
                f"{_tail(out)}\nHint: run observability.instrument(...) in the notebook and fix "
                "the error above (exercises 02-04)."
            )
        time.sleep(0.1)
    raise GradingError(
        f"the capstone services did not start within {timeout_s:.0f} s.\n{_tail(out)}\n"
        "Hint: instrument(...) must return quickly; start no servers and no loops in it."
    )


def _delete_push_group(stack: Stack, service: str) -> None:
    with contextlib.suppress(Exception):
        httpx.delete(
            f"{stack.url('pushgateway')}/metrics/job/{DRIFT_JOB}/service/{service}", timeout=5.0
        )


def check_folder(folder: Path) -> None:
    """Raise :class:`~graders.errors.GradingError` unless ``folder`` holds every file of a completed capstone."""
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise GradingError(
            f"{folder} lacks {', '.join(missing)}. Hint: run every cell of the capstone notebook "
            "(its %%writefile cells and the cell that saves reference.pkl), then try again."
        )


@contextlib.contextmanager
def start_system(
    folder: Path,
    stack: Stack,
    *,
    service: str,
    factor: float = 60.0,
    drift_every_s: float = 2.0,
    drift_window_s: float = 20.0,
    seed: int = 0,
    start_timeout_s: float = 60.0,
) -> Iterator[System]:
    """Run the capstone system of ``folder`` against ``stack``; yield the :class:`System`.

    Args:
        folder: a completed capstone folder (:data:`REQUIRED_FILES`).
        stack: the running lab stack.
        service: the ``service`` label of this run (use a fresh one per run, so alerts an earlier
            run left in Alertmanager never count).
        factor: time compression of the rules (``for: 5m`` -> ``5s`` at 60).
        drift_every_s / drift_window_s: the drift job's ``--every`` and ``--window-s``.
        seed: model and profile seed of the services.
        start_timeout_s: how long the services may take to answer.

    Raises:
        GradingError: a file is missing, or the services or the drift job would not start.
        lab_stack.errors.LabError: the stack refused the rules or the Alertmanager configuration.
    """
    from ml_service.gpu import GpuServer, SimulatedGPU

    folder = Path(folder).resolve()
    check_folder(folder)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", service):
        raise GradingError(
            f"service name {service!r} has characters other than letters, digits, '-' and '_'. "
            "Hint: use e.g. 'capstone-1a2b3c'."
        )
    log_path = stack.service_logs_dir / f"{service}.log"
    log_path.unlink(missing_ok=True)
    log_path.touch()
    env = _child_env(stack)
    with tempfile.TemporaryDirectory(prefix=f"capstone-{service}-") as tmp:
        work = Path(tmp)
        serve_out, drift_err = work / "services.out", work / "drift_job.err"
        ready = work / "ready.json"
        rules = work / f"capstone-{service}.yml"
        rendered = work / "alertmanager.yml"
        device = SimulatedGPU()
        gpu = GpuServer(device)
        gpu_url = gpu.start()
        services: subprocess.Popen[bytes] | None = None
        drift: subprocess.Popen[bytes] | None = None
        targets: list[tuple[str, str]] = []
        applied: dict[str, bool] = {"rules": False, "alertmanager": False}
        try:
            # Files first: a rules file promtool refuses fails the run before anything starts.
            rules.write_text(
                compress_rules((folder / "alert_rules.yml").read_text(), factor=factor)
            )
            rendered.write_text(
                render_alertmanager_config(
                    (folder / "alertmanager.yml").read_text(), sink_addresses(stack), fast=True
                )
            )
            with serve_out.open("wb") as out:
                services = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "graders.capstone_system",
                        "serve",
                        "--folder",
                        str(folder),
                        "--service",
                        service,
                        "--log",
                        str(log_path),
                        "--otlp",
                        f"{stack.url('tempo_otlp_http')}/v1/traces",
                        "--ready-file",
                        str(ready),
                        "--seed",
                        str(seed),
                    ],
                    cwd=folder,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            urls = _wait_ready(services, ready, serve_out, start_timeout_s)
            system = System(
                service=service,
                folder=folder,
                gateway_url=str(urls["gateway_url"]),
                feature_url=str(urls["feature_url"]),
                gpu_url=gpu_url,
                log_path=log_path,
                started_at=time.time(),
                gpu=device,
                serve_log=serve_out,
                drift_log=drift_err,
            )
            targets = [
                (SERVICE_JOB, f"{system.gateway_url}/metrics"),
                (LIVE_GPU_JOB, f"{gpu_url}/metrics"),
            ]
            stack.register_target(SERVICE_JOB, targets[0][1], labels={"service": service})
            stack.register_target(
                LIVE_GPU_JOB, targets[1][1], labels={"service": system.gpu_service}
            )
            stack.apply_alertmanager_config(rendered)
            applied["alertmanager"] = True
            stack.apply_rules([rules])
            applied["rules"] = True
            _delete_push_group(stack, service)
            with drift_err.open("wb") as err:
                drift = subprocess.Popen(
                    [
                        sys.executable,
                        str(folder / "drift_job.py"),
                        "--log",
                        str(log_path),
                        "--reference",
                        str(folder / "reference.pkl"),
                        "--pushgateway",
                        stack.url("pushgateway"),
                        "--service",
                        service,
                        "--every",
                        f"{drift_every_s:g}",
                        "--window-s",
                        f"{drift_window_s:g}",
                    ],
                    cwd=folder,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    start_new_session=True,
                )
            threading.Thread(
                target=system._read_drift, args=(drift.stdout,), name="drift-job", daemon=True
            ).start()
            stack.prometheus.wait_for(
                f'count(up{{service=~"{service}|{system.gpu_service}"}} == 1) >= 2', timeout=20
            )
            system.started_at = time.time()
            yield system
        finally:
            _stop(drift)
            for job, url in targets:
                with contextlib.suppress(Exception):
                    stack.unregister_target(job, url)
            if applied["rules"]:
                with contextlib.suppress(Exception):
                    stack.remove_rules([rules.stem])
            if applied["alertmanager"]:
                with contextlib.suppress(Exception):
                    stack.reset_config("alertmanager")
            _stop(services)
            gpu.stop()
            _delete_push_group(stack, service)


# --- the child process -----------------------------------------------------------------------
def serve(
    folder: Path, *, service: str, log_path: Path, otlp_endpoint: str, ready: Path, seed: int
) -> None:
    """Run the student's instrumented services until SIGTERM (the child's entry point)."""
    from prometheus_client import CollectorRegistry

    from ml_service.serve import start_services

    sys.path.insert(0, str(folder))
    import observability  # the student's module, from their folder

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    registry = CollectorRegistry()
    gateway_hooks, feature_hooks = observability.instrument(
        service, registry=registry, log_path=log_path, otlp_endpoint=otlp_endpoint
    )
    services = start_services(hooks=gateway_hooks, feature_hooks=feature_hooks, seed=seed)
    try:
        partial = ready.with_suffix(".tmp")
        partial.write_text(
            json.dumps({"gateway_url": services.gateway_url, "feature_url": services.feature_url})
        )
        partial.replace(ready)
        stopping.wait()
    finally:
        services.stop()  # the apps' shutdown hooks flush the student's exporters


@click.group()
def main() -> None:
    """The capstone system runner's child process (started by start_system)."""


@main.command("serve")
@click.option("--folder", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--service", required=True)
@click.option("--log", "log_path", type=click.Path(path_type=Path), required=True)
@click.option("--otlp", "otlp_endpoint", required=True)
@click.option("--ready-file", type=click.Path(path_type=Path), required=True)
@click.option("--seed", type=int, default=0)
def serve_command(
    folder: Path, service: str, log_path: Path, otlp_endpoint: str, ready_file: Path, seed: int
) -> None:
    """Serve the gateway and feature service with the folder's instrumentation until SIGTERM."""
    serve(
        folder.resolve(),
        service=service,
        log_path=log_path,
        otlp_endpoint=otlp_endpoint,
        ready=ready_file,
        seed=seed,
    )


if __name__ == "__main__":  # pragma: no cover - the child process's entry point
    main()
