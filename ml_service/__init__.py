"""The system under observation: a fraud model, its two services, traffic, drift data, a GPU source.

Modules (import the one you need; this package imports nothing heavy on its own):

* :mod:`ml_service.data` — generated transactions, named features, fraud labels;
* :mod:`ml_service.model` — the scikit-learn model, trained deterministically and cached;
* :mod:`ml_service.features_app` / :mod:`ml_service.gateway_app` — the two FastAPI apps;
* :mod:`ml_service.hooks` — where metrics, logging and tracing plug in;
* :mod:`ml_service.serve` — run the apps in-process or as processes, register with Prometheus;
* :mod:`ml_service.traffic` — scenarios and their ground truth;
* :mod:`ml_service.drift_data` — reference/current datasets with known drift;
* :mod:`ml_service.gpu` — DCGM-named GPU metrics (NVML or simulated);
* :mod:`ml_service.errors` — the package's error family.
"""

from __future__ import annotations

__all__: list[str] = []
