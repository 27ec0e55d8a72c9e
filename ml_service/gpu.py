"""A GPU metrics source in the DCGM exporter's names and units, real (NVML) or simulated.

Exposes, per GPU, with labels ``gpu``, ``UUID``, ``device``, ``modelName``, ``Hostname`` (as
dcgm-exporter does) plus ``simulated`` (``"true"``/``"false"``):

* ``DCGM_FI_DEV_GPU_UTIL`` — utilisation, %;
* ``DCGM_FI_DEV_FB_USED`` / ``DCGM_FI_DEV_FB_FREE`` — framebuffer memory used / free, MiB;
* ``DCGM_FI_DEV_GPU_TEMP`` — temperature, °C;
* ``DCGM_FI_DEV_POWER_USAGE`` — power draw, W.

With an NVIDIA GPU and NVML available it reads the device (``--mode auto`` or ``nvml``); otherwise
(or with ``--mode simulated``) it simulates one device, named ``Simulated GPU (no NVIDIA
device)``, whose state the traffic scenarios drive:

* utilisation follows the request rate: ``min(100, UTIL_PER_RPS × load_rps)``;
* ``leak_mib_per_s`` grows the used framebuffer every second until it is full; then the device
  is out of memory (``oom: true`` in ``/state``), utilisation drops to 0 and the traffic generator
  makes the gateway's inference fail, as a real CUDA OOM does; ``reset`` frees it.

HTTP (``python -m ml_service.gpu --host 127.0.0.1 --port P [--mode auto|nvml|simulated]``):
``GET /metrics`` (exposition format), ``GET /ready``, ``GET /state`` (JSON),
``POST /simulate`` (``{"load_rps": 40, "utilisation": 55, "leak_mib_per_s": 512, "reset": true}``;
409 in NVML mode).

Example:
    >>> device = SimulatedGPU(total_mib=1000.0, base_used_mib=100.0)
    >>> device.simulate(leak_mib_per_s=10_000.0); device.sample(now=device.t0 + 1.0).oom
    True
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "METRICS",
    "SIMULATED_MODEL_NAME",
    "UTIL_PER_RPS",
    "DcgmCollector",
    "GpuReading",
    "GpuServer",
    "GpuSource",
    "NvmlGPU",
    "SimulatedGPU",
    "main",
    "open_source",
]

SIMULATED_MODEL_NAME = "Simulated GPU (no NVIDIA device)"
#: Simulated utilisation (%) per request/s of load.
UTIL_PER_RPS = 2.0

#: DCGM field name -> (help text, GpuReading attribute).
METRICS: dict[str, tuple[str, str]] = {
    "DCGM_FI_DEV_GPU_UTIL": ("GPU utilization (in %).", "util_percent"),
    "DCGM_FI_DEV_FB_USED": ("Framebuffer memory used (in MiB).", "fb_used_mib"),
    "DCGM_FI_DEV_FB_FREE": ("Framebuffer memory free (in MiB).", "fb_free_mib"),
    "DCGM_FI_DEV_GPU_TEMP": ("GPU temperature (in C).", "temp_c"),
    "DCGM_FI_DEV_POWER_USAGE": ("Power draw (in W).", "power_w"),
}


@dataclass(frozen=True)
class GpuReading:
    """One device's values at one instant, in DCGM units."""

    index: int
    uuid: str
    model_name: str
    util_percent: float
    fb_used_mib: float
    fb_free_mib: float
    temp_c: float
    power_w: float
    simulated: bool
    oom: bool = False

    @property
    def fb_total_mib(self) -> float:
        """Used + free framebuffer, MiB."""
        return self.fb_used_mib + self.fb_free_mib


class GpuSource(Protocol):
    """Something that reads GPUs: real (NVML) or simulated."""

    simulated: bool

    def readings(self) -> list[GpuReading]:
        """The current values of every device."""
        ...


class SimulatedGPU:
    """One simulated device whose utilisation and memory the traffic scenarios drive."""

    simulated = True

    def __init__(
        self,
        *,
        total_mib: float = 81_920.0,
        base_used_mib: float | None = None,
        uuid: str = "GPU-00000000-0000-4000-8000-000000000000",
    ) -> None:
        self.total_mib = total_mib
        #: memory held by the loaded model and runtime (default 7.5% of the framebuffer)
        self.base_used_mib = 0.075 * total_mib if base_used_mib is None else base_used_mib
        self.uuid = uuid
        self._lock = threading.Lock()
        self.t0 = time.monotonic()
        self.load_rps = 0.0
        self.util_override: float | None = None
        self.leak_mib_per_s = 0.0
        self._leaked_mib = 0.0
        self._leak_since = self.t0

    def _leaked(self, now: float) -> float:
        return self._leaked_mib + self.leak_mib_per_s * max(now - self._leak_since, 0.0)

    def simulate(
        self,
        *,
        load_rps: float | None = None,
        utilisation: float | None = None,
        leak_mib_per_s: float | None = None,
        reset: bool = False,
    ) -> None:
        """Change load, utilisation override and leak rate; ``reset`` frees everything first."""
        with self._lock:
            now = time.monotonic()
            if reset:
                self.load_rps, self.util_override, self.leak_mib_per_s = 0.0, None, 0.0
                self._leaked_mib, self._leak_since = 0.0, now
            if load_rps is not None:
                self.load_rps = max(load_rps, 0.0)
            if utilisation is not None:
                self.util_override = min(max(utilisation, 0.0), 100.0)
            if leak_mib_per_s is not None:
                self._leaked_mib = self._leaked(now)
                self._leak_since = now
                self.leak_mib_per_s = max(leak_mib_per_s, 0.0)

    def sample(self, *, now: float | None = None) -> GpuReading:
        """The device's values at ``now`` (monotonic seconds; default: now)."""
        with self._lock:
            t = time.monotonic() if now is None else now
            used = min(self.base_used_mib + self._leaked(t), self.total_mib)
            oom = used >= self.total_mib
            util = (
                self.util_override
                if self.util_override is not None
                else min(100.0, UTIL_PER_RPS * self.load_rps)
            )
            if oom:
                util = 0.0
            return GpuReading(
                index=0,
                uuid=self.uuid,
                model_name=SIMULATED_MODEL_NAME,
                util_percent=round(util, 3),
                fb_used_mib=round(used, 3),
                fb_free_mib=round(self.total_mib - used, 3),
                temp_c=round(34.0 + 0.45 * util, 3),
                power_w=round(60.0 + 3.4 * util, 3),
                simulated=True,
                oom=oom,
            )

    def readings(self) -> list[GpuReading]:
        """A one-element list: the simulated device now."""
        return [self.sample()]

    def state(self) -> dict[str, Any]:
        """JSON-ready state for ``GET /state``."""
        r = self.sample()
        return {
            "simulated": True,
            "oom": r.oom,
            "total_mib": self.total_mib,
            "used_mib": r.fb_used_mib,
            "free_mib": r.fb_free_mib,
            "util_percent": r.util_percent,
            "load_rps": self.load_rps,
            "leak_mib_per_s": self.leak_mib_per_s,
        }


class NvmlGPU:
    """Reads every NVIDIA device through NVML (``nvidia-ml-py``)."""

    simulated = False

    def __init__(self) -> None:
        import pynvml

        pynvml.nvmlInit()
        self._nvml = pynvml
        self._handles = [
            pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())
        ]

    def readings(self) -> list[GpuReading]:
        """Current values of each device."""
        nv = self._nvml
        out = []
        for i, handle in enumerate(self._handles):
            mem = nv.nvmlDeviceGetMemoryInfo(handle)
            name = nv.nvmlDeviceGetName(handle)
            uuid = nv.nvmlDeviceGetUUID(handle)
            try:
                power = nv.nvmlDeviceGetPowerUsage(handle) / 1000.0
            except nv.NVMLError:
                power = 0.0
            out.append(
                GpuReading(
                    index=i,
                    uuid=uuid.decode() if isinstance(uuid, bytes) else str(uuid),
                    model_name=name.decode() if isinstance(name, bytes) else str(name),
                    util_percent=float(nv.nvmlDeviceGetUtilizationRates(handle).gpu),
                    fb_used_mib=mem.used / 2**20,
                    fb_free_mib=mem.free / 2**20,
                    temp_c=float(nv.nvmlDeviceGetTemperature(handle, nv.NVML_TEMPERATURE_GPU)),
                    power_w=power,
                    simulated=False,
                )
            )
        return out

    def state(self) -> dict[str, Any]:
        """JSON-ready state for ``GET /state``."""
        return {"simulated": False, "oom": False, "devices": [asdict(r) for r in self.readings()]}


def open_source(mode: str = "auto", *, total_mib: float = 81_920.0) -> SimulatedGPU | NvmlGPU:
    """NVML when ``mode`` is ``nvml``, or ``auto`` and a GPU answers; else a simulated device
    with ``total_mib`` of framebuffer."""
    if mode not in ("auto", "nvml", "simulated"):
        raise ValueError(f"mode={mode!r}. Hint: use auto, nvml or simulated.")
    if mode == "simulated":
        return SimulatedGPU(total_mib=total_mib)
    try:
        source = NvmlGPU()
        if source.readings():
            return source
    except Exception:
        if mode == "nvml":
            raise
    return SimulatedGPU(total_mib=total_mib)


class DcgmCollector(Collector):
    """A prometheus_client collector that reads the source at every scrape."""

    def __init__(self, source: GpuSource, *, hostname: str | None = None) -> None:
        self.source = source
        self.hostname = hostname or socket.gethostname()

    def collect(self) -> Iterable[Metric]:
        """One gauge family per DCGM field, one sample per device."""
        readings = self.source.readings()
        labels = ["gpu", "UUID", "device", "modelName", "Hostname", "simulated"]
        for name, (help_text, attr) in METRICS.items():
            family = GaugeMetricFamily(name, help_text, labels=labels)
            for r in readings:
                values = [
                    str(r.index),
                    r.uuid,
                    f"nvidia{r.index}",
                    r.model_name,
                    self.hostname,
                    "true" if r.simulated else "false",
                ]
                family.add_metric(values, float(getattr(r, attr)))
            yield family


class GpuServer:
    """The GPU source's HTTP server (``/metrics``, ``/ready``, ``/state``, ``POST /simulate``)."""

    def __init__(
        self, source: SimulatedGPU | NvmlGPU, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.source = source
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(DcgmCollector(source))
        self._httpd = ThreadingHTTPServer((host, port), _handler(self))
        self._httpd.daemon_threads = True
        self.url = f"http://{host}:{self._httpd.server_address[1]}"
        self._thread: threading.Thread | None = None

    def exposition(self) -> bytes:
        """The current metrics in the Prometheus text format."""
        return generate_latest(self.registry)

    def start(self) -> str:
        """Serve in a background thread; return the URL."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="gpu-source", daemon=True
        )
        self._thread.start()
        return self.url

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        self._httpd.serve_forever()

    def stop(self) -> None:
        """Stop the background thread started by :meth:`start` and close the socket."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(5.0)
            self._thread = None
        self.close()

    def close(self) -> None:
        """Close the listening socket."""
        self._httpd.server_close()


def _handler(server: GpuServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet: no access log
            return

        def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == "/metrics":
                self._send(200, server.exposition(), "text/plain; version=0.0.4; charset=utf-8")
            elif path in ("/ready", "/health", "/-/ready"):
                self._send(200, b'{"status": "ok"}')
            elif path == "/state":
                self._send(200, json.dumps(server.source.state()).encode())
            else:
                self._send(404, b'{"detail": "not found; try /metrics, /ready, /state"}')

        def do_POST(self) -> None:
            if self.path.split("?")[0] != "/simulate":
                self._send(404, b'{"detail": "not found; POST /simulate"}')
                return
            source = server.source
            if not isinstance(source, SimulatedGPU):
                self._send(
                    409,
                    json.dumps(
                        {
                            "detail": "this source reads a real GPU through NVML; "
                            "simulation is unavailable. Hint: start it with --mode simulated."
                        }
                    ).encode(),
                )
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("body is not a JSON object")
                source.simulate(
                    load_rps=_opt_float(body, "load_rps"),
                    utilisation=_opt_float(body, "utilisation"),
                    leak_mib_per_s=_opt_float(body, "leak_mib_per_s"),
                    reset=bool(body.get("reset", False)),
                )
            except (ValueError, TypeError) as exc:
                self._send(
                    400,
                    json.dumps(
                        {
                            "detail": f"bad /simulate body: {exc}. Hint: send "
                            '{"load_rps": 20, "leak_mib_per_s": 100, "reset": false}.'
                        }
                    ).encode(),
                )
                return
            self._send(200, json.dumps(source.state()).encode())

    return Handler


def _opt_float(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    return None if value is None else float(value)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ml_service.gpu", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9400, help="dcgm-exporter's default is 9400")
    parser.add_argument("--mode", choices=("auto", "nvml", "simulated"), default="auto")
    parser.add_argument(
        "--total-mib", type=float, default=81_920.0, help="simulated framebuffer size"
    )
    return parser.parse_args(argv)


def _open_server(args: argparse.Namespace) -> GpuServer:
    return GpuServer(
        open_source(args.mode, total_mib=args.total_mib), host=args.host, port=args.port
    )


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m ml_service.gpu --host 127.0.0.1 --port P [--mode auto|nvml|simulated]``."""
    server = _open_server(_parse(argv))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


async def run(argv: Sequence[str], stop: asyncio.Event) -> None:
    """The same source as a coroutine, for :mod:`lab_stack.embedded.host`: serve until ``stop``.

    The HTTP server keeps its own thread, so a scrape never waits on the host's event loop.
    """
    import asyncio

    server = _open_server(_parse(argv))
    server.start()
    try:
        await stop.wait()
    finally:
        await asyncio.to_thread(server.stop)


if __name__ == "__main__":
    main()
