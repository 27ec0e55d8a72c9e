"""Wait for components to become ready; errors carry the component's last log lines."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from lab_stack.errors import StartupError

__all__ = ["ReadyCheck", "tail", "wait_ready"]


def tail(path: str | Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file ('' when it does not exist)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class ReadyCheck:
    """How to tell that one component is ready, and how to explain that it is not."""

    name: str
    url: str
    log: str = ""
    #: Returns a reason when the component can no longer become ready (its process died).
    dead: Callable[[], str | None] = lambda: None
    hint: str = "run `lab doctor`, or read the log with `lab logs NAME`"


#: Seconds between two rounds of port probes while some component's port is still closed.
POLL_INTERVAL_S = 0.01
#: Seconds between two HTTP probes once the port accepts connections but answers "not ready".
HTTP_POLL_INTERVAL_S = 0.02
#: Seconds between two looks at whether a component whose port is still closed has died.
DEATH_CHECK_INTERVAL_S = 0.05


def _port_open(url: str) -> bool:
    """True when the URL's TCP port accepts a connection (a refused connect costs microseconds)."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), 0.5):
            return True
    except OSError:
        return False


class _PortWatch:
    """One thread probing every still-closed port each :data:`POLL_INTERVAL_S`.

    A thread per component polling its own port wakes ten threads a hundred times a second during
    ``lab up``: CPU taken from the components that are starting on the same cores. One round of
    refused connects for all of them costs a few tens of microseconds.
    """

    def __init__(self, urls: list[str]) -> None:
        self.opened = {url: threading.Event() for url in urls}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lab-port-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pending = list(self.opened)
        while pending and not self._stop.is_set():
            for url in [u for u in pending if _port_open(u)]:
                self.opened[url].set()
                pending.remove(url)
            self._stop.wait(POLL_INTERVAL_S)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def _probe(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_one(
    check: ReadyCheck,
    timeout: float,
    on_ready: Callable[[str, float], None],
    client: httpx.Client,
    port_open: threading.Event,
) -> float:
    started = time.monotonic()
    deadline = started + timeout
    while True:
        # Ask over HTTP only once something listens on the port (the port watch tells).
        if port_open.is_set():
            if _probe(client, check.url):
                elapsed = time.monotonic() - started
                on_ready(check.name, elapsed)
                return elapsed
            time.sleep(HTTP_POLL_INTERVAL_S)
        else:
            port_open.wait(DEATH_CHECK_INTERVAL_S)
        reason = check.dead()
        if reason is not None:
            error = StartupError(
                f"{check.name} stopped before it was ready ({reason}). "
                f"Hint: {check.hint.replace('NAME', check.name)}."
            )
            _attach_log(error, check)
            raise error
        if time.monotonic() >= deadline:
            error = StartupError(
                f"{check.name} was not ready at {check.url} after {timeout:.0f} s. "
                f"Hint: {check.hint.replace('NAME', check.name)}; a slow machine may need "
                "LAB_STARTUP_TIMEOUT=60."
            )
            _attach_log(error, check)
            raise error


def _attach_log(error: StartupError, check: ReadyCheck) -> None:
    if check.log:
        last = tail(check.log)
        error.add_note(f"last lines of {check.log}:\n{last}" if last else f"{check.log} is empty")


def wait_ready(
    checks: list[ReadyCheck],
    *,
    timeout: float,
    on_ready: Callable[[str, float], None] = lambda name, seconds: None,
) -> Mapping[str, float]:
    """Wait for every check at once; return seconds to ready per component.

    Raises:
        StartupError: the first component that died or timed out (others are still waited for,
            so that their state is known), with its last log lines attached as a note.
    """
    if not checks:
        return {}
    results: dict[str, float] = {}
    errors: list[StartupError] = []
    # One client for every check: readiness URLs are plain HTTP on loopback, and an httpx client
    # that verifies TLS loads the CA bundle when it is made (tens of ms each, on the start path).
    watch = _PortWatch([check.url for check in checks])
    with (
        httpx.Client(timeout=1.0, trust_env=False, verify=False) as client,
        ThreadPoolExecutor(max_workers=len(checks)) as pool,
    ):
        futures = {
            pool.submit(_wait_one, check, timeout, on_ready, client, watch.opened[check.url]): check
            for check in checks
        }
        try:
            for future, check in futures.items():
                try:
                    results[check.name] = future.result()
                except StartupError as exc:
                    errors.append(exc)
        finally:
            watch.close()
    if errors:
        first = errors[0]
        for other in errors[1:]:
            first.add_note(f"also: {other}")
        raise first
    return results
