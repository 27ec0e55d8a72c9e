"""Fixtures of the dashboard tests: dashboard documents, and live traffic in the session stack."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import lab_stack

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
ML_DASHBOARD = ROOT / "solutions/ex02_metrics/dashboards/ml_service.json"
INFRA_DASHBOARD = ROOT / "solutions/ex06_alerting/dashboards/infrastructure.json"
STACK_DASHBOARD = ROOT / "solutions/ex01_stack/grafana/dashboards/lab_stack.json"
EXPORTED = DATA / "exported_shared.json"
EX01 = ROOT / "solutions/ex01_stack"


def document(path: Path) -> dict[str, Any]:
    """A fresh, mutable copy of a dashboard JSON file."""
    return copy.deepcopy(json.loads(path.read_text()))


@pytest.fixture(scope="session")
def ml_source(stack: lab_stack.Stack) -> Iterator[str]:
    """A process serving the ML service's metric names with traffic, scraped as job ml-service."""
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("ml_metrics_source.py"))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline().split()[1])
        url = f"http://127.0.0.1:{port}"
        stack.register_target("ml-service", f"{url}/metrics")
        # rate() needs two scrapes; wait until the histogram rate is there.
        with stack.prometheus as prom:
            prom.wait_for("sum(rate(ml_prediction_duration_seconds_count[5s])) > 0", timeout=30.0)
        yield url
    finally:
        stack.unregister_target("ml-service")
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def logs_and_traces(stack: lab_stack.Stack) -> None:
    """Log lines in Loki and a trace in Tempo, both labelled dash-test."""
    with stack.loki as loki:
        loki.push_lines({"job": "dash-test"}, [f"predict ok request={i}" for i in range(20)])
    now = time.time_ns()
    span = {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "name": "predict",
        "kind": 2,
        "startTimeUnixNano": str(now - 50_000_000),
        "endTimeUnixNano": str(now),
    }
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "dash-test"}}]
                },
                "scopeSpans": [{"scope": {"name": "tests"}, "spans": [span]}],
            }
        ]
    }
    response = httpx.post(
        f"{stack.url('tempo_otlp_http')}/v1/traces", json=body, timeout=10.0, trust_env=False
    )
    response.raise_for_status()
    deadline = time.monotonic() + 15
    with stack.tempo as tempo:
        while not tempo.search(q='{ resource.service.name = "dash-test" }').get("traces"):
            assert time.monotonic() < deadline, "Tempo never returned the test trace"
            time.sleep(0.3)
