"""Fixtures for the ML service tests: a trained model in a temporary cache, the two services on
free ports (in-process, real HTTP between them), and a simulated GPU source as a real process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ml_service.hooks import Hooks, PredictionEvent
from ml_service.model import FraudModel, load_model
from ml_service.serve import Services, free_port, start_services, wait_ready


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh model cache folder for the session."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def model(model_cache: Path) -> FraudModel:
    """The default model (seed 0), trained into the session's cache."""
    return load_model(seed=0, cache_dir=model_cache)


class EventLog:
    """Collects every PredictionEvent the gateway hands to its on_prediction hook."""

    def __init__(self) -> None:
        self.events: list[PredictionEvent] = []

    def __call__(self, event: PredictionEvent) -> None:
        self.events.append(event)

    def by_id(self) -> dict[str, PredictionEvent]:
        return {e.request_id: e for e in self.events}


@pytest.fixture(scope="session")
def events() -> EventLog:
    """The on_prediction log of the session's gateway."""
    return EventLog()


@pytest.fixture(scope="session")
def services(model: FraudModel, events: EventLog) -> Iterator[Services]:
    """Feature service + gateway in this process on free ports, the gateway hooked to ``events``."""
    svc = start_services(model=model, hooks=Hooks(on_prediction=events), feature_timeout_s=2.0)
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture()
def healthy(services: Services) -> Iterator[Services]:
    """The session's services, reset to healthy before and after the test."""
    services.feature_control.reset()
    services.gateway_control.reset()
    yield services
    services.feature_control.reset()
    services.gateway_control.reset()


@pytest.fixture(scope="session")
def gpu_url() -> Iterator[str]:
    """A simulated GPU source (1000 MiB framebuffer) as a real process: ``python -m ml_service.gpu``."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ml_service.gpu",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--mode",
            "simulated",
            "--total-mib",
            "1000",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/ready", timeout_s=20.0, process=proc)  # type: ignore[arg-type]
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()


def transaction(**overrides: Any) -> dict[str, Any]:
    """A valid /predict body."""
    body: dict[str, Any] = {
        "user_id": "user-00007",
        "amount": 49.9,
        "merchant_category": "grocery",
        "channel": "in_store",
        "hour": 14,
        "distance_from_home_km": 3.2,
        "device_age_days": 400.0,
    }
    body.update(overrides)
    return body
