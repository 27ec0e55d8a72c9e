"""Specification of the traffic generator: every scenario has the effect it claims, measured from
outside (client latencies, status counts, the inputs the gateway saw, labels, the GPU source)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import requests
from scipy import stats

from ml_service.errors import ScenarioError, TrafficError
from ml_service.serve import Services
from ml_service.traffic import GroundTruth, Scenario, run_traffic

from .conftest import EventLog


def _inputs(truth: GroundTruth, events: EventLog, feature: str, in_effect: bool) -> list[object]:
    """The values of ``feature`` the gateway's hook saw for the run's requests."""
    by_id = events.by_id()
    out = []
    for r in truth.records:
        event = by_id.get(r.request_id)
        if r.in_effect == in_effect and event is not None and event.features is not None:
            out.append(event.features[feature])
    return out


def test_steady_counts_and_exact_quantiles(healthy: Services) -> None:
    """Steady traffic: every request succeeds, counts add up, quantiles are numpy's on the raw latencies."""
    truth = run_traffic(healthy.gateway_url, scenario="steady", rate=100, requests=150, seed=1)
    assert truth.sent == 150 == truth.by_status["success"] == truth.by_http_status[200]
    assert truth.by_model_version == {"1.0.0": 150}
    assert len(set(truth.request_ids)) == 150
    lat = np.array(truth.latencies_s)
    assert truth.p50 == np.quantile(lat, 0.5) and truth.p99 == np.quantile(lat, 0.99)
    assert truth.p50 <= truth.p95 <= truth.p99 < 1.0
    assert 60 < truth.achieved_rate < 140
    assert truth.to_dict()["by_status"] == {"success": 150}


def test_bad_requests_are_422_and_counted_by_the_hook(healthy: Services, events: EventLog) -> None:
    """Malformed requests come back 422 client_error, as many as the gateway's hook counted."""
    truth = run_traffic(healthy.gateway_url, rate=100, requests=100, bad_request_ratio=0.2, seed=2)
    bad = truth.by_status["client_error"]
    assert 5 < bad < 40 and truth.by_http_status[422] == bad
    by_id = events.by_id()
    assert sum(by_id[rid].status == "client_error" for rid in truth.request_ids) == bad


def test_latency_spike_raises_latency_only_during_the_spike(healthy: Services) -> None:
    """latency_spike: requests in the spike take at least delay_s; the others stay fast."""
    scenario = Scenario.named("latency_spike", delay_s=0.3, start=0.3, end=0.7)
    # A moderate load: the test runs beside other test workers on two cores.
    truth = run_traffic(
        healthy.gateway_url, scenario=scenario, rate=50, requests=150, concurrency=40
    )
    assert truth.quantile(0.5, in_effect=True) >= 0.3
    # Outside the spike most requests stay fast (the few sent right after it queue behind the slow
    # ones, so the median, not the tail, is what "only during the spike" promises).
    assert truth.quantile(0.5, in_effect=False) < 0.15
    assert truth.p95 >= 0.3 and truth.by_status == {"success": 150}
    assert truth.effect_started_at is not None and truth.effect_ended_at is not None
    assert requests.get(f"{healthy.feature_url}/_control").json()["delay_s"] == 0  # undone


def test_error_burst_fails_the_chosen_share_during_the_burst(healthy: Services) -> None:
    """error_burst: about error_rate of in-burst requests get 502 error; none outside the burst."""
    scenario = Scenario.named("error_burst", error_rate=0.5, start=0.25, end=0.75)
    truth = run_traffic(healthy.gateway_url, scenario=scenario, rate=100, requests=200)
    errors_in = sum(r.status == "error" for r in truth.records if r.in_effect)
    errors_out = sum(r.status == "error" for r in truth.records if not r.in_effect)
    assert 40 <= errors_in <= 60 and errors_out <= 2
    assert truth.by_http_status[502] == truth.by_status["error"] == errors_in + errors_out
    assert truth.error_ratio == pytest.approx(truth.by_status["error"] / 200)


def test_feature_pipeline_failure_is_silent_but_visible_in_inputs(
    healthy: Services, events: EventLog
) -> None:
    """feature_pipeline_failure: all 200s, yet the model saw nulls and a constant after onset."""
    truth = run_traffic(
        healthy.gateway_url, scenario="feature_pipeline_failure", rate=100, requests=200, seed=3
    )
    assert truth.by_status == {"success": 200}
    assert truth.drifted_features == ["avg_amount_30d", "txn_count_24h"]
    assert truth.drift_started_at is not None
    during_avg = _inputs(truth, events, "avg_amount_30d", True)
    assert during_avg and all(v is None for v in during_avg)
    before = _inputs(truth, events, "txn_count_24h", False)
    during = _inputs(truth, events, "txn_count_24h", True)
    assert set(during) == {0.0}
    assert stats.ks_2samp(before, during).pvalue < 1e-6


def test_covariate_drift_shifts_exactly_the_named_features(
    healthy: Services, events: EventLog
) -> None:
    """covariate_drift: two-sample tests flag the drifted inputs and not the others."""
    truth = run_traffic(
        healthy.gateway_url, scenario="covariate_drift", rate=200, requests=600, seed=4
    )
    assert truth.drifted_features == ["amount", "distance_from_home_km", "merchant_category"]
    for feature in ("amount", "distance_from_home_km", "hour", "device_age_days"):
        p = stats.ks_2samp(
            _inputs(truth, events, feature, False), _inputs(truth, events, feature, True)
        ).pvalue
        assert (p < 1e-4) == (feature in truth.drifted_features), (feature, p)
    before = _inputs(truth, events, "merchant_category", False)
    during = _inputs(truth, events, "merchant_category", True)
    cats = sorted(set(before) | set(during))
    table = np.array([[before.count(c) for c in cats], [during.count(c) for c in cats]])
    assert stats.chi2_contingency(table)[1] < 1e-4


def test_concept_drift_drops_accuracy_while_inputs_look_the_same(
    healthy: Services, events: EventLog
) -> None:
    """concept_drift: the delayed labels show accuracy falling; the inputs do not drift."""
    truth = run_traffic(
        healthy.gateway_url, scenario="concept_drift", rate=200, requests=600, seed=5
    )
    assert truth.accuracy(in_effect=False) - truth.accuracy(in_effect=True) > 0.25
    labels = truth.labels()
    assert len(labels) == 600 and {"request_id", "label", "predicted", "sent_at"} <= set(labels[0])
    assert truth.drifted_features == [] and truth.drift_started_at is not None
    amount_p = stats.ks_2samp(
        _inputs(truth, events, "amount", False), _inputs(truth, events, "amount", True)
    ).pvalue
    assert amount_p > 1e-3


def _fb_used_fraction(metrics_text: str) -> float:
    used = free = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("DCGM_FI_DEV_FB_USED{"):
            used = float(line.rsplit(" ", 1)[1])
        elif line.startswith("DCGM_FI_DEV_FB_FREE{"):
            free = float(line.rsplit(" ", 1)[1])
    return used / (used + free)


def test_gpu_memory_leak_fills_the_gpu_then_inference_fails(
    healthy: Services, gpu_url: str
) -> None:
    """gpu_memory_leak: FB_USED grows past 90%, the GPU goes OOM and the gateway answers 503."""
    seen: list[float] = []
    stop = threading.Event()

    def scrape() -> None:
        while not stop.wait(0.1):
            seen.append(_fb_used_fraction(requests.get(f"{gpu_url}/metrics").text))

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        truth = run_traffic(
            healthy.gateway_url, scenario="gpu_memory_leak", rate=100, requests=250, gpu_url=gpu_url
        )
    finally:
        stop.set()
        scraper.join()
    assert max(seen) >= 0.9 and seen[0] < 0.5
    assert truth.oom_at is not None
    failed = [r for r in truth.records if r.http_status == 503]
    # A request fails only once the GPU is out of memory: it was answered after the OOM (it may
    # have been sent a little before, and waited on a busy machine).
    assert failed and all(r.sent_at + r.latency_s >= truth.oom_at - 0.5 for r in failed)
    assert "out of memory" in (failed[0].error or "")
    state = requests.get(f"{gpu_url}/state").json()
    assert not state["oom"] and state["load_rps"] == 0  # undone at the end


def test_gpu_load_follows_request_rate(healthy: Services, gpu_url: str) -> None:
    """While traffic runs, the simulated utilisation is proportional to the request rate."""
    samples: list[float] = []

    def probe() -> None:
        for _ in range(5):
            samples.append(requests.get(f"{gpu_url}/state").json()["util_percent"])
            threading.Event().wait(0.1)

    t = threading.Timer(0.2, probe)
    t.start()
    run_traffic(healthy.gateway_url, rate=25, duration_s=1.2, gpu_url=gpu_url)
    t.join()
    assert max(samples) == pytest.approx(50.0)


@pytest.mark.parametrize(
    "url", ["http://10.0.0.1:8000", "http://example.com", "http://192.168.1.5:80"]
)
def test_non_loopback_targets_are_refused(url: str) -> None:
    """The generator refuses any target that is not on the loopback interface."""
    with pytest.raises(TrafficError, match="not a loopback address"):
        run_traffic(url, requests=1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rate": 1e6}, "rate="),
        ({"requests": 10_000_000}, "requests="),
        ({"duration_s": 3600}, "duration_s="),
        ({"concurrency": 1000}, "concurrency="),
    ],
)
def test_bounds_over_the_caps_are_refused(kwargs: dict[str, float], match: str) -> None:
    """Rates, counts, durations and concurrency above the hard caps are refused before sending."""
    with pytest.raises(TrafficError, match=match):
        run_traffic("http://127.0.0.1:9", **kwargs)  # type: ignore[arg-type]


def test_scenario_errors_are_explained() -> None:
    """Unknown scenarios, bad parameters and a leak without GPU source raise ScenarioError with a hint."""
    with pytest.raises(ScenarioError, match=r"unknown scenario 'meltdown'.*Hint"):
        Scenario.named("meltdown")
    with pytest.raises(ScenarioError, match="cannot shift 'txn_count_24h'"):
        Scenario.named("covariate_drift", shifts={"txn_count_24h": "large"})
    with pytest.raises(ScenarioError, match="needs gpu_url"):
        run_traffic("http://127.0.0.1:9", scenario="gpu_memory_leak", requests=1)
