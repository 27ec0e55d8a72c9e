"""Fixtures for the log shipper's tests: a real embedded Loki and real shipper processes."""

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
import yaml

from lab_stack.ports import free_port


@dataclass
class Proc:
    """A started server process and its log file."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)


def _start(args: list[str], port: int, log: Path, timeout: float = 30.0) -> Proc:
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", *args], stdout=out, stderr=subprocess.STDOUT)
    running = Proc(proc, port, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{args[0]} exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{running.url}/ready", timeout=1).status_code == 200:
                return running
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    running.stop(signal.SIGKILL)
    raise RuntimeError(f"{args[0]} not ready within {timeout} s:\n{log.read_text()}")


def start_loki(data_dir: Path, port: int | None = None) -> Proc:
    """Start the embedded Loki and wait for /ready."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    args = ["lab_stack.embedded.loki", "--host", "127.0.0.1", "--port", str(port)]
    return _start([*args, "--data-dir", str(data_dir)], port, data_dir.parent / f"loki-{port}.log")


@pytest.fixture(scope="module")
def loki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """One embedded Loki shared by a module (tests use distinct job labels)."""
    running = start_loki(tmp_path_factory.mktemp("loki") / "data")
    try:
        yield running
    finally:
        running.stop()


@dataclass
class ShipperSetup:
    """A shipper config in a temporary folder, and how to start processes for it."""

    root: Path
    job: str
    loki_url: str
    batchsize: int = 1024 * 1024

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def positions(self) -> Path:
        return self.root / "positions.yaml"

    def write_config(self) -> Path:
        self.logs.mkdir(parents=True, exist_ok=True)
        cfg = {
            "server": {"http_listen_port": 0},
            "positions": {"filename": str(self.positions)},
            "clients": [
                {
                    "url": f"{self.loki_url}/loki/api/v1/push",
                    "batchwait": "100ms",
                    "batchsize": self.batchsize,
                    "backoff_config": {
                        "min_period": "100ms",
                        "max_period": "400ms",
                        "max_retries": 0,
                    },
                }
            ],
            "scrape_configs": [
                {
                    "job_name": self.job,
                    "static_configs": [
                        {"labels": {"job": self.job, "__path__": str(self.logs / "*.log")}}
                    ],
                }
            ],
        }
        path = self.root / "promtail.yml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    def start(self) -> Proc:
        port = free_port()
        cfg = yaml.safe_load(self.write_config().read_text())
        cfg["server"]["http_listen_port"] = port
        path = self.root / "promtail.yml"
        path.write_text(yaml.safe_dump(cfg))
        return _start(
            ["lab_stack.embedded.shipper", "--config", str(path), "--host", "127.0.0.1"],
            port,
            self.root / "shipper.log",
        )

    def lines_in_loki(self) -> list[str]:
        """Every line Loki holds for this job (oldest first)."""
        now = time.time_ns()
        r = httpx.get(
            f"{self.loki_url}/loki/api/v1/query_range",
            params={
                "query": f'{{job="{self.job}"}}',
                "limit": 5000,  # Loki's default max_entries_limit_per_query
                "direction": "forward",
                "start": now - 3600 * 10**9,
                "end": now + 60 * 10**9,
            },
            timeout=10,
        )
        r.raise_for_status()
        values = [v for s in r.json()["data"]["result"] for v in s["values"]]
        return [line for _, line in sorted(values, key=lambda v: int(v[0]))]

    def wait_for_count(self, expected: int, timeout: float = 20.0) -> list[str]:
        """Wait until Loki holds ``expected`` lines for the job; fail on more or on timeout."""
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        while time.monotonic() < deadline:
            lines = self.lines_in_loki()
            assert len(lines) <= expected, f"more lines than written: {len(lines)} > {expected}"
            if len(lines) == expected:
                return lines
            time.sleep(0.2)
        raise AssertionError(f"Loki holds {len(lines)} lines for {self.job}, expected {expected}")

    def committed(self) -> dict[str, int]:
        if not self.positions.exists():
            return {}
        data = yaml.safe_load(self.positions.read_text()) or {}
        return {k: int(v) for k, v in (data.get("positions") or {}).items()}


@pytest.fixture
def setup_factory(tmp_path: Path) -> Iterator[Callable[..., ShipperSetup]]:
    """Make shipper setups; every shipper started through them is stopped at teardown."""
    made: list[ShipperSetup] = []
    started: list[Proc] = []

    def make(loki_url: str, job: str, **kw: int) -> ShipperSetup:
        setup = ShipperSetup(tmp_path / job, job, loki_url, **kw)
        original = setup.start

        def tracked_start() -> Proc:
            proc = original()
            started.append(proc)
            return proc

        setup.start = tracked_start  # type: ignore[method-assign]
        made.append(setup)
        return setup

    try:
        yield make
    finally:
        for proc in started:
            proc.stop(signal.SIGKILL)


@pytest.fixture
def launch_loki() -> Iterator[Callable[..., Proc]]:
    """Start embedded Loki processes on demand (for outage tests); all stop at teardown."""
    started: list[Proc] = []

    def launch(data_dir: Path, port: int | None = None) -> Proc:
        running = start_loki(data_dir, port)
        started.append(running)
        return running

    try:
        yield launch
    finally:
        for running in started:
            running.stop()


@pytest.fixture
def port_factory() -> Callable[[], int]:
    """Hand out free ports."""
    return free_port
