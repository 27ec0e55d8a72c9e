"""A stand-in for an instrumented ML service: serves the metric names of exercise 02 with traffic.

Run as ``python tests/dashboards/ml_metrics_source.py``; prints ``PORT <n>`` once it listens on a
free port of 127.0.0.1, then keeps predicting (about 50 predictions a second, ~3 % errors) until
it is terminated. ``--no-errors`` never fails a prediction (for the "error ratio is 0" case).
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


def main() -> None:
    """Serve /metrics and keep the counters moving."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-errors", action="store_true")
    args = parser.parse_args()
    registry = CollectorRegistry()
    labels = ["model_name", "model_version"]
    total = Counter("ml_predictions", "Predictions.", [*labels, "status"], registry=registry)
    duration = Histogram(
        "ml_prediction_duration_seconds",
        "Prediction latency.",
        labels,
        registry=registry,
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
    )
    confidence = Histogram(
        "ml_prediction_confidence",
        "predict_proba of the chosen class.",
        labels,
        registry=registry,
        buckets=(0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0),
    )
    in_flight = Gauge(
        "ml_requests_in_flight", "Predictions being served.", labels, registry=registry
    )
    server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    sys.stdout.write(f"PORT {server.server_port}\n")
    sys.stdout.flush()
    rng = random.Random(7)
    model = ("fraud", "1.0.0")
    while True:
        for _ in range(5):
            status = "ok"
            draw = rng.random()
            if not args.no_errors and draw < 0.03:
                status = "error"
            elif draw < 0.05:
                status = "client_error"
            total.labels(*model, status).inc()
            duration.labels(*model).observe(rng.lognormvariate(-3.5, 0.6))
            confidence.labels(*model).observe(min(1.0, 0.5 + abs(rng.gauss(0.3, 0.15))))
        in_flight.labels(*model).set(rng.randint(0, 12))
        time.sleep(0.1)


if __name__ == "__main__":
    main()
