"""Run the services: in this process (uvicorn in a thread) or as child processes, and register them.

* :class:`ServerThread` — any ASGI app on a free loopback port in a background thread;
  ``start()`` returns the URL, ``stop()`` shuts it down cleanly; also a context manager.
* :class:`ServiceProcess` — ``python -m ml_service features|gateway ...`` as a child process,
  waited on through ``GET /health``; ``stop()`` terminates it (its process group).
* :func:`start_services` — feature service + gateway in this process, wired together; returns a
  :class:`Services` (URLs, the shared controls) that is also a context manager. In a notebook keep
  the object and call ``stop()`` at the end.
* :func:`register` — add a service as a Prometheus scrape target of the running lab stack.

Example:
    >>> with start_services() as svc:                          # doctest: +SKIP
    ...     requests.get(svc.gateway_url + "/health").json()["status"]
    'ok'
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import requests
import uvicorn

from lab_stack import ports
from ml_service.errors import ServerError
from ml_service.features_app import FeatureControl
from ml_service.features_app import create_app as create_feature_app
from ml_service.gateway_app import GatewayControl
from ml_service.gateway_app import create_app as create_gateway_app
from ml_service.hooks import Hooks
from ml_service.model import FraudModel

if TYPE_CHECKING:
    from lab_stack import Stack

__all__ = [
    "HOST",
    "ServerThread",
    "ServiceProcess",
    "Services",
    "free_port",
    "register",
    "start_services",
    "stop_process_group",
    "wait_ready",
]

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A TCP port that was free on ``host`` a moment ago (for child processes that need one).

    Taken below the kernel's ephemeral range (:func:`lab_stack.ports.free_port`), so an outgoing
    connection cannot grab it before the child binds it.
    """
    return ports.free_port(host=host)


def wait_ready(
    url: str, *, timeout_s: float = 15.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll ``url`` until it answers 200; raise :class:`ServerError` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServerError(
                f"service exited with code {process.returncode} before {url} was ready. "
                "Hint: run the same command by hand to see its error."
            )
        try:
            resp = requests.get(url, timeout=1.0)
            if resp.status_code == 200:
                return
            last = f"HTTP {resp.status_code}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        time.sleep(0.05)
    raise ServerError(
        f"{url} not ready after {timeout_s}s (last: {last}). Hint: check the service's log output."
    )


class ServerThread:
    """An ASGI app served by uvicorn on a loopback port in a daemon thread.

    Example:
        >>> with ServerThread(app) as url:                   # doctest: +SKIP
        ...     requests.get(url + "/health")
    """

    def __init__(
        self, app: Any, *, host: str = HOST, port: int = 0, log_level: str = "warning"
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._config = uvicorn.Config(
            app, host=host, port=port, log_level=log_level, access_log=False, lifespan="on"
        )
        self._server = uvicorn.Server(self._config)
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.url = ""

    def start(self, *, timeout_s: float = 10.0) -> str:
        """Bind, start serving, wait until started; return ``http://127.0.0.1:PORT``."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.set_inheritable(True)
        self._sock = sock
        self.port = int(sock.getsockname()[1])
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"uvicorn-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ServerError(
                    f"uvicorn did not start on {self.url} within {timeout_s}s. "
                    "Hint: an on_startup hook may have raised; run the app with log_level='info'."
                )
            time.sleep(0.01)
        return self.url

    def stop(self, *, timeout_s: float = 10.0) -> None:
        """Ask uvicorn to exit, wait for the thread, close the socket."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(2.0)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def stop_process_group(proc: subprocess.Popen[bytes] | None, *, timeout_s: float = 10.0) -> None:
    """SIGTERM the process group led by ``proc``, then SIGKILL if it lingers (no-op once exited)."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5.0)


@dataclass
class ServiceProcess:
    """A service running as ``python -m ml_service ...`` in its own process group."""

    args: Sequence[str]
    port: int
    log_path: Path | None = None
    env: Mapping[str, str] | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{HOST}:{self.port}"

    def start(self, *, timeout_s: float = 30.0) -> str:
        """Start the process and wait for ``GET /health``; return the URL."""
        out: Any = subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            out = self.log_path.open("ab")
        env = {**os.environ, **(self.env or {})}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ml_service", *self.args, "--port", str(self.port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        if out is not subprocess.DEVNULL:
            out.close()
        try:
            wait_ready(f"{self.url}/health", timeout_s=timeout_s, process=self.process)
        except ServerError:
            self.stop()
            raise
        return self.url

    def stop(self, *, timeout_s: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL if it lingers."""
        stop_process_group(self.process, timeout_s=timeout_s)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @classmethod
    def features(
        cls,
        *,
        port: int | None = None,
        seed: int = 0,
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ServiceProcess:
        """The feature service as a child process (``env`` adds environment variables)."""
        return cls(["features", "--seed", str(seed)], port or free_port(), log_path, env)

    @classmethod
    def gateway(
        cls,
        *,
        feature_url: str,
        port: int | None = None,
        seed: int = 0,
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ServiceProcess:
        """The gateway as a child process, calling ``feature_url`` (``LAB_HOME`` in ``env``
        chooses where its model cache lives)."""
        return cls(
            ["gateway", "--feature-url", feature_url, "--seed", str(seed)],
            port or free_port(),
            log_path,
            env,
        )


@dataclass
class Services:
    """The feature service and the gateway running in this process; stop with :meth:`stop`."""

    feature_url: str
    gateway_url: str
    feature_control: FeatureControl
    gateway_control: GatewayControl
    _threads: list[ServerThread] = field(default_factory=list, repr=False)

    def stop(self) -> None:
        """Stop the gateway, then the feature service."""
        for server in reversed(self._threads):
            server.stop()
        self._threads.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_services(
    *,
    hooks: Hooks | None = None,
    feature_hooks: Hooks | None = None,
    model: FraudModel | None = None,
    seed: int = 0,
    gateway_port: int = 0,
    feature_port: int = 0,
    feature_timeout_s: float = 5.0,
) -> Services:
    """Start the feature service and the gateway in background threads on free ports.

    Args:
        hooks: the gateway's instrumentation hooks.
        feature_hooks: the feature service's hooks.
        model: the model to serve (default: the cached model for ``seed``).
        seed: model and profile seed.
        gateway_port / feature_port: fixed ports (0 = free ports).
        feature_timeout_s: the gateway's timeout on feature calls.
    """
    fctl, gctl = FeatureControl(), GatewayControl()
    features = ServerThread(
        create_feature_app(control=fctl, seed=seed, hooks=feature_hooks), port=feature_port
    )
    feature_url = features.start()
    try:
        gateway = ServerThread(
            create_gateway_app(
                feature_url=feature_url,
                model=model,
                hooks=hooks,
                control=gctl,
                feature_timeout_s=feature_timeout_s,
                seed=seed,
            ),
            port=gateway_port,
        )
        gateway_url = gateway.start()
    except BaseException:
        features.stop()
        raise
    return Services(feature_url, gateway_url, fctl, gctl, [features, gateway])


def register(
    stack: Stack,
    job: str,
    url: str,
    *,
    labels: Mapping[str, str] | None = None,
) -> None:
    """Add ``url`` (its ``/metrics``) to the lab stack's Prometheus as a target of ``job``."""
    stack.register_target(job, url, labels=dict(labels) if labels else None)
