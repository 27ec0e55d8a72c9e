"""Real Prometheus, Alertmanager and Pushgateway processes for the clients' integration tests.

Each runs on a free 127.0.0.1 port with its data under a temporary folder, is waited on through its
readiness URL, and is stopped in the fixture's ``finally``. Separate from the lab stack's own
session fixture so that these tests need nothing but the binaries.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lab_stack.ports import free_port

PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
PUSHGATEWAY = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")


def _serve(argv: list[str], url: str, ready_path: str, log: Path) -> Iterator[str]:
    ready_url = url + ready_path
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 20
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{argv[0]} exited with {proc.returncode}: {log.read_text()[-2000:]}"
                    )
                try:
                    if httpx.get(ready_url, timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{ready_url} not ready after 20 s: {log.read_text()[-2000:]}"
                    )
                time.sleep(0.05)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _require(binary: str | None, package: str) -> str:
    # Not a skip: these binaries are part of `make setup`; their absence is a setup failure.
    if binary is None:
        raise RuntimeError(
            f"{package} is not installed. Hint: run `make setup` (apt-get install {package})."
        )
    return binary


@pytest.fixture(scope="module")
def alertmanager_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Alertmanager with one webhook receiver that points nowhere (nothing is delivered)."""
    binary = _require(ALERTMANAGER, "prometheus-alertmanager")
    folder = tmp_path_factory.mktemp("alertmanager")
    config = folder / "alertmanager.yml"
    config.write_text(
        "route:\n  receiver: lab-webhook\n  group_wait: 1s\n  group_interval: 1s\n"
        "receivers:\n  - name: lab-webhook\n    webhook_configs:\n"
        f"      - url: http://127.0.0.1:{free_port()}/hook\n"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.path={folder / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    yield from _serve(argv, url, "/-/ready", folder / "log")


@pytest.fixture(scope="module")
def prometheus_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus scraping itself every second, with one always-firing alerting rule."""
    binary = _require(PROMETHEUS, "prometheus")
    folder = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    (folder / "rules.yml").write_text(
        "groups:\n  - name: lab\n    interval: 1s\n    rules:\n"
        "      - alert: AlwaysFiring\n        expr: vector(1)\n"
        "      - record: lab:one\n        expr: vector(1)\n"
    )
    config = folder / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {folder / 'rules.yml'}\n"
        "scrape_configs:\n  - job_name: prometheus\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{port}']\n"
        "  - job_name: nowhere\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{free_port()}']\n"
    )
    url = f"http://127.0.0.1:{port}"
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={folder / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
    ]
    yield from _serve(argv, url, "/-/ready", folder / "log")


@pytest.fixture(scope="module")
def pushgateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Pushgateway."""
    binary = _require(PUSHGATEWAY, "prometheus-pushgateway")
    folder = tmp_path_factory.mktemp("pushgateway")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    yield from _serve(
        [binary, f"--web.listen-address=127.0.0.1:{port}"], url, "/-/ready", folder / "log"
    )


@pytest.fixture(scope="module")
def sinks_ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """The lab's real notification sinks process: (HTTP base URL, SMTP port)."""
    folder = tmp_path_factory.mktemp("sinks")
    http_port, smtp_port = free_port(), free_port()
    url = f"http://127.0.0.1:{http_port}"
    argv = [
        sys.executable,
        "-m",
        "lab_stack.sinks",
        "--host=127.0.0.1",
        f"--http-port={http_port}",
        f"--smtp-port={smtp_port}",
        f"--data-dir={folder / 'data'}",
    ]
    for served in _serve(argv, url, "/ready", folder / "log"):
        yield served, smtp_port
