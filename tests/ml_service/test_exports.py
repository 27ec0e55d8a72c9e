"""The public names of each ml_service module are pinned: changing them is a deliberate act."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "ml_service.errors": [
        "FeatureServiceError",
        "InferenceError",
        "MLServiceError",
        "ScenarioError",
        "ServerError",
        "TrafficError",
    ],
    "ml_service.hooks": [
        "FetchFn",
        "FetchWrapper",
        "Hooks",
        "InferFn",
        "InferenceWrapper",
        "PredictionEvent",
        "Status",
        "chain",
    ],
    "ml_service.serve": [
        "HOST",
        "ServerThread",
        "ServiceProcess",
        "Services",
        "free_port",
        "register",
        "start_services",
        "stop_process_group",
        "wait_ready",
    ],
    "ml_service.traffic": [
        "MAX_CONCURRENCY",
        "MAX_DURATION_S",
        "MAX_RATE",
        "MAX_REQUESTS",
        "SCENARIOS",
        "GroundTruth",
        "RequestRecord",
        "Scenario",
        "check_loopback",
        "run_traffic",
    ],
    "ml_service.drift_data": [
        "DriftDataset",
        "FeatureTruth",
        "Shift",
        "hard_cases",
        "reference_and_current",
    ],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names_are_pinned(module: str) -> None:
    """Each module's __all__ is exactly the pinned list, and every name exists."""
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(PUBLIC[module])
    for name in mod.__all__:
        assert hasattr(mod, name), name


def test_every_module_declares_all() -> None:
    """Every public module of the package declares __all__."""
    for module in (
        "data",
        "model",
        "features_app",
        "gateway_app",
        "gpu",
        *[m.split(".")[1] for m in PUBLIC],
    ):
        assert isinstance(importlib.import_module(f"ml_service.{module}").__all__, list)
