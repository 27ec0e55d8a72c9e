"""Integration: the traffic generator's ground truth agrees with what a real Prometheus scraping an
instrumented copy of the gateway records — counts exactly, quantiles within bucket resolution."""

from __future__ import annotations

import bisect
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from fastapi import FastAPI
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.responses import Response

from ml_service.hooks import Hooks, PredictionEvent
from ml_service.model import FraudModel
from ml_service.serve import Services, free_port, start_services, wait_ready
from ml_service.traffic import Scenario, run_traffic

PROMETHEUS = "/usr/bin/prometheus"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
JOB = "ml-gateway"


def _instrumented(model: FraudModel) -> Services:
    """The gateway with a reference instrumentation: a Counter by status, a latency Histogram."""
    registry = CollectorRegistry()
    total = Counter("ml_predictions", "Predictions served.", ["status"], registry=registry)
    duration = Histogram(
        "ml_prediction_duration_seconds", "Prediction latency.", buckets=BUCKETS, registry=registry
    )
    for status in ("success", "client_error", "error"):
        total.labels(status)

    def observe(event: PredictionEvent) -> None:
        total.labels(event.status).inc()
        duration.observe(event.latency_s)

    def metrics_route(app: FastAPI) -> None:
        app.add_api_route(
            "/metrics", lambda: Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
        )

    return start_services(model=model, hooks=Hooks(on_prediction=observe, on_create=metrics_route))


@pytest.fixture()
def scraped(model: FraudModel, tmp_path: Path) -> Iterator[tuple[Services, str]]:
    """The instrumented services and a real Prometheus scraping the gateway every second."""
    svc = _instrumented(model)
    port = free_port()
    target = svc.gateway_url.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: ['{target}']\n"
    )
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/-/ready", timeout_s=30, process=proc)  # type: ignore[arg-type]
        deadline = time.monotonic() + 15
        while not _query(url, f'up{{job="{JOB}"}} == 1'):
            assert time.monotonic() < deadline, "Prometheus never scraped the gateway"
            time.sleep(0.2)
        yield svc, url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
        svc.stop()


def _query(url: str, promql: str) -> list[dict[str, Any]]:
    resp = requests.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5)
    resp.raise_for_status()
    result: list[dict[str, Any]] = resp.json()["data"]["result"]
    return result


def _bucket_width(value: float) -> tuple[float, float]:
    """The histogram bucket (lower, upper] holding ``value``."""
    i = bisect.bisect_left(BUCKETS, value)
    return (BUCKETS[i - 1] if i else 0.0, BUCKETS[i] if i < len(BUCKETS) else float("inf"))


def test_ground_truth_matches_prometheus(scraped: tuple[Services, str]) -> None:
    """Counts per status equal the generator's exactly; p50/p95/p99 agree within one bucket."""
    svc, prom = scraped
    svc.feature_control.delay_s = 0.015
    svc.feature_control.error_rate = 0.1
    scenario = Scenario.named("latency_spike", delay_s=0.3, start=0.7, end=1.0)
    truth = run_traffic(
        svc.gateway_url,
        scenario=scenario,
        rate=100,
        requests=300,
        concurrency=48,
        bad_request_ratio=0.1,
        seed=11,
    )
    assert set(truth.by_status) == {"success", "client_error", "error"}
    last_sent = truth.ended_at
    while time.time() < last_sent + 2.5:  # two more scrapes after the last response
        time.sleep(0.2)
    counts = {
        r["metric"]["status"]: int(float(r["value"][1]))
        for r in _query(prom, "ml_predictions_total")
    }
    assert counts == truth.by_status
    for q in (0.5, 0.95, 0.99):
        (estimate,) = _query(
            prom, f"histogram_quantile({q}, sum by (le) (ml_prediction_duration_seconds_bucket))"
        )
        prom_q = float(estimate["value"][1])
        true_q = truth.quantile(q)
        lower, upper = _bucket_width(true_q)
        assert lower - 1e-3 <= prom_q <= upper + 1e-3 or abs(prom_q - true_q) <= (upper - lower), (
            q,
            prom_q,
            true_q,
        )
