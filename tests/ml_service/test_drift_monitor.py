"""The streaming drift monitor: fixed bins, constant-time window counts, PSI equal to a direct computation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest, make_asgi_app
from prometheus_client.parser import text_string_to_metric_families

from ml_service import drift_monitor
from ml_service.data import CATEGORICAL_FEATURES, FEATURES
from ml_service.drift_data import reference_and_current
from ml_service.drift_monitor import (
    MISSING,
    OTHER,
    PSI_METRIC,
    WINDOW_METRIC,
    DriftMonitor,
    FeatureBins,
    population_stability_index,
)
from ml_service.hooks import Hooks
from ml_service.model import FraudModel
from ml_service.serve import start_services
from ml_service.traffic import Scenario, run_traffic


def direct_psi(reference: pd.Series, current: pd.Series, *, n_bins: int = 10) -> float:
    """PSI written out from its definition, independently of the monitor's code."""
    eps = 1e-4
    if reference.dtype == object:
        cats = sorted(reference.dropna().astype(str).unique())

        def shares(s: pd.Series) -> np.ndarray:
            present = s.dropna().astype(str)
            counts = [int((present == c).sum()) for c in cats]
            counts.append(int((~present.isin(cats)).sum()))
            counts.append(int(s.isna().sum()))
            return np.array(counts, dtype=float) / len(s)

    else:
        ref = reference.dropna().to_numpy(float)
        edges = np.unique(np.quantile(ref, np.linspace(0, 1, n_bins + 1)[1:-1]))
        bounds = np.concatenate([[-np.inf], edges, [np.inf]])

        def shares(s: pd.Series) -> np.ndarray:
            x = s.to_numpy(float)
            present = x[~np.isnan(x)]
            counts = [
                ((present >= lo) & (present < hi)).sum() for lo, hi in itertools.pairwise(bounds)
            ]
            counts.append(np.isnan(x).sum())
            return np.array(counts, dtype=float) / len(s)

    r, c = np.maximum(shares(reference), eps), np.maximum(shares(current), eps)
    return float(np.sum((c - r) * np.log(c / r)))


@pytest.fixture(scope="module")
def drifted() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A reference and a current frame with numeric and categorical drift, a new category and NaNs."""
    ds = reference_and_current(
        seed=7,
        n_reference=4_000,
        n_current=1_500,
        shifts={"amount": "large", "channel": "small"},
        new_categories={"merchant_category": ("crypto_exchange", 0.15)},
        missing_current={"distance_from_home_km": 0.2},
    )
    return ds.reference, ds.current


def test_streaming_psi_equals_direct_psi_on_the_same_data(
    drifted: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    """After observing every current row one by one, each feature's PSI equals the direct formula."""
    reference, current = drifted
    monitor = DriftMonitor.from_reference(
        reference, window=len(current), registry=CollectorRegistry()
    )
    for row in current.to_dict("records"):
        monitor.observe(row)
    got = monitor.psi()
    for feature in FEATURES:
        assert got[feature] == pytest.approx(
            direct_psi(reference[feature], current[feature]), rel=1e-9, abs=1e-12
        )
    assert got["amount"] > 0.25 and got["merchant_category"] > 0.1
    assert got["hour"] < 0.05


def test_window_slides_and_keeps_only_the_last_requests(
    drifted: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    """With a window of N, the counts are those of the last N rows: old drifted rows leave it."""
    reference, current = drifted
    monitor = DriftMonitor.from_reference(reference, window=500, registry=CollectorRegistry())
    for row in current.head(800).to_dict("records"):
        monitor.observe(row)
    clean = reference.sample(500, random_state=1)
    for row in clean.to_dict("records"):
        monitor.observe(row)
    assert monitor.window_requests == 500 and monitor.observed_total == 1_300
    counts = monitor.window_counts()
    for b in monitor.bins:
        assert counts[b.feature] == b.count(clean[b.feature]).tolist()
    assert monitor.psi()["amount"] == pytest.approx(
        direct_psi(reference["amount"], clean["amount"])
    )
    assert monitor.psi()["amount"] < 0.1


def test_bins_are_fixed_from_the_reference() -> None:
    """Numeric bins are reference quantiles open at both ends; categorical bins are the categories, other, missing."""
    ref = pd.DataFrame({"x": np.arange(100.0), "c": ["a", "b", "a", "c"] * 25})
    num = FeatureBins.from_reference("x", ref["x"], n_bins=4)
    assert num.kind == "numeric" and num.edges == (24.75, 49.5, 74.25)
    assert [num.index(v) for v in (-1e9, 24.75, 50, 1e9, None, math.nan, "junk")] == [
        0,
        1,
        2,
        3,
        4,
        4,
        4,
    ]
    cat = FeatureBins.from_reference("c", ref["c"])
    assert cat.labels == ["a", "b", "c", OTHER, MISSING]
    assert [cat.index(v) for v in ("a", "c", "zzz", None)] == [0, 2, 3, 4]
    assert cat.reference_counts == (50, 25, 25, 0, 0)


def test_psi_of_identical_counts_is_zero_and_mismatched_bins_raise() -> None:
    """PSI is 0 for equal shares, NaN for an empty side, and refuses count vectors of different length."""
    assert population_stability_index([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)
    assert math.isnan(population_stability_index([1, 2], [0, 0]))
    with pytest.raises(ValueError, match="Hint: count both samples"):
        population_stability_index([1, 2], [1, 2, 3])


def test_constructor_rejects_bad_arguments() -> None:
    """A zero window or a feature the reference lacks is refused with a hint."""
    ref = pd.DataFrame({"x": [1.0, 2.0]})
    with pytest.raises(ValueError, match="window=0"):
        DriftMonitor.from_reference(ref, window=0, registry=None)
    with pytest.raises(ValueError, match="not columns of the reference"):
        DriftMonitor.from_reference(ref, features=["y"], registry=None)


def test_gauges_are_exported_to_the_injected_registry(
    drifted: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    """The registry passed in exposes one PSI gauge per feature and the window size, with the computed values."""
    reference, current = drifted
    registry = CollectorRegistry()
    monitor = DriftMonitor.from_reference(reference, window=300, registry=registry)
    for row in current.head(300).to_dict("records"):
        monitor.observe(row)
    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
    }
    assert families[PSI_METRIC].type == "gauge"
    exported = {s.labels["feature"]: s.value for s in families[PSI_METRIC].samples}
    assert exported == pytest.approx(monitor.psi())
    assert families[WINDOW_METRIC].samples[0].value == 300


def test_gateway_hook_feeds_the_monitor_and_prometheus_text_shows_the_drift(
    tmp_path: object, model: FraudModel
) -> None:
    """Wired into the gateway's on_prediction hook, the monitor sees covariate drift in real requests."""
    reference = reference_and_current(seed=3, n_reference=5_000, n_current=1).reference
    registry = CollectorRegistry()
    monitor = DriftMonitor.from_reference(reference, window=200, registry=registry)

    def mount(app: object) -> None:
        app.mount("/metrics", make_asgi_app(registry))  # type: ignore[attr-defined]

    with start_services(
        model=model, hooks=Hooks(on_prediction=monitor.on_prediction, on_create=mount)
    ) as svc:
        run_traffic(svc.gateway_url, scenario="steady", rate=200, requests=200, seed=11)
        steady = monitor.psi()
        shifted = Scenario.named("covariate_drift", start=0.0, end=1.0)
        run_traffic(svc.gateway_url, scenario=shifted, rate=200, requests=200, seed=12)
        text = requests.get(f"{svc.gateway_url}/metrics/", timeout=5).text
    assert monitor.window_requests == 200
    assert max(steady[f] for f in ("amount", "hour", "channel")) < 0.2
    scraped = {
        s.labels["feature"]: s.value
        for f in text_string_to_metric_families(text)
        if f.name == PSI_METRIC
        for s in f.samples
    }
    for feature in ("amount", "distance_from_home_km", "merchant_category"):
        assert scraped[feature] > 0.25, (feature, scraped)
    assert set(CATEGORICAL_FEATURES) <= set(scraped)


def test_public_names() -> None:
    """The module exports exactly its documented public names."""
    assert sorted(drift_monitor.__all__) == sorted(
        [
            "EPSILON",
            "MISSING",
            "OTHER",
            "PSI_METRIC",
            "WINDOW_METRIC",
            "DriftMonitor",
            "FeatureBins",
            "population_stability_index",
        ]
    )
