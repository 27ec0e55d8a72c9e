"""Specification of the GPU metrics source: DCGM names and labels, valid exposition, a simulated
device driven by load and a leak, NVML when a GPU is present."""

from __future__ import annotations

import subprocess

import pytest
import requests

from ml_service.gpu import METRICS, SIMULATED_MODEL_NAME, GpuServer, SimulatedGPU, open_source

PROMTOOL = "/usr/bin/promtool"


CAMEL = b"label names should be written in 'snake_case' not 'camelCase'"


def _promtool_ok(exposition: bytes) -> None:
    """`promtool check metrics` parses the exposition; its only lint finding is DCGM's camelCase
    ``modelName`` label (exit 3, as for a real dcgm-exporter), never a format error (exit 1)."""
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=exposition, capture_output=True, timeout=30
    )
    findings = [li for li in (result.stdout + result.stderr).splitlines() if li.strip()]
    assert result.returncode in (0, 3), findings
    assert all(li.endswith(CAMEL) for li in findings), findings
    assert len(findings) <= len(METRICS)


def test_simulated_exposition_passes_promtool(gpu_url: str) -> None:
    """The simulated source's /metrics is valid exposition format for `promtool check metrics`."""
    _promtool_ok(requests.get(f"{gpu_url}/metrics").content)
    broken = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=b"garbage{ 1\n", capture_output=True
    )
    assert broken.returncode == 1  # the check can fail: a format error is exit 1


def test_dcgm_names_labels_and_simulated_marker(gpu_url: str) -> None:
    """Every DCGM field is exposed as a gauge with gpu, UUID, modelName, Hostname and simulated labels."""
    text = requests.get(f"{gpu_url}/metrics").text
    for name in METRICS:
        assert f"# TYPE {name} gauge" in text
        line = next(li for li in text.splitlines() if li.startswith(name + "{"))
        for label in (
            'gpu="0"',
            "UUID=",
            f'modelName="{SIMULATED_MODEL_NAME}"',
            "Hostname=",
            'simulated="true"',
        ):
            assert label in line, (name, label)


def test_leak_crosses_90_percent_and_ends_out_of_memory() -> None:
    """A leak grows FB_USED (FB_USED + FB_FREE constant) until the device is out of memory."""
    gpu = SimulatedGPU(total_mib=1000.0, base_used_mib=100.0)
    gpu.simulate(leak_mib_per_s=900.0)
    t = gpu.t0 + 0.01
    readings = [gpu.sample(now=t + s) for s in (0.5, 0.95, 2.0)]
    assert readings[0].fb_used_mib < 900 <= readings[1].fb_used_mib
    assert all(r.fb_total_mib == pytest.approx(1000.0) for r in readings)
    assert readings[2].oom and readings[2].fb_free_mib == 0 and readings[2].util_percent == 0
    gpu.simulate(reset=True)
    assert gpu.sample().fb_used_mib == 100.0


def test_utilisation_follows_load_and_drives_power_and_temperature() -> None:
    """Utilisation is 2 % per request/s (capped at 100); power and temperature rise with it."""
    gpu = SimulatedGPU()
    idle = gpu.sample()
    gpu.simulate(load_rps=20)
    busy = gpu.sample()
    assert (idle.util_percent, busy.util_percent) == (0.0, 40.0)
    assert busy.power_w > idle.power_w and busy.temp_c > idle.temp_c
    gpu.simulate(load_rps=500)
    assert gpu.sample().util_percent == 100.0


def test_simulate_endpoint_validates_its_body(gpu_url: str) -> None:
    """POST /simulate answers 400 with a hint for a malformed body and 200 with the state otherwise."""
    bad = requests.post(f"{gpu_url}/simulate", data=b"[1, 2]")
    assert bad.status_code == 400 and "Hint" in bad.json()["detail"]
    ok = requests.post(f"{gpu_url}/simulate", json={"utilisation": 33})
    assert ok.status_code == 200 and ok.json()["util_percent"] == 33
    requests.post(f"{gpu_url}/simulate", json={"reset": True}).raise_for_status()


def test_in_process_server_serves_metrics_and_stops() -> None:
    """GpuServer serves /ready and /metrics from a thread and releases its port on stop."""
    server = GpuServer(SimulatedGPU())
    url = server.start()
    try:
        assert requests.get(f"{url}/ready").status_code == 200
        _promtool_ok(server.exposition())
    finally:
        server.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/ready", timeout=1)


def _has_gpu() -> bool:
    try:
        return not open_source("nvml").simulated
    except Exception:
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not _has_gpu(), reason="needs a GPU")
def test_nvml_mode_reads_the_real_device() -> None:
    """With an NVIDIA GPU, auto mode reads NVML: real model name, simulated="false", valid exposition."""
    source = open_source("auto")
    assert not source.simulated
    server = GpuServer(source)
    text = server.exposition()
    server.close()
    assert b'simulated="false"' in text and SIMULATED_MODEL_NAME.encode() not in text
    _promtool_ok(text)
    reading = source.readings()[0]
    assert reading.fb_total_mib > 1000 and 0 <= reading.util_percent <= 100
