"""The stack's components as backend-neutral specs.

A :class:`ComponentSpec` says what a component is: its ports, its readiness URL, how to start it
(a binary with arguments, or a Python module) and which config files it needs. Both backends run
the same specs; a :class:`Placement` says where things are for one backend (ports, the address one
component uses to reach another, the folders a component sees).

Example:
    >>> from lab_stack.components import SPECS
    >>> SPECS["prometheus"].ready_path
    '/-/ready'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import yaml

from lab_stack import binaries
from lab_stack.binaries import Binary

__all__ = [
    "SPECS",
    "ComponentSpec",
    "Placement",
    "PortSpec",
    "component_names",
    "render_yaml",
    "with_requirements",
]


class Placement(Protocol):
    """Where things are for one backend, as seen by the components."""

    @property
    def listen_host(self) -> str:
        """The address the component listens on (loopback for processes)."""

    def view_from(self, component: str) -> Placement:
        """This placement as ``component`` sees it (its listen address, how it reaches peers)."""

    def has(self, component: str) -> bool:
        """True when ``component`` is part of this stack."""

    def port(self, component: str, port: str) -> int:
        """The port ``component`` listens on (inside its own network namespace)."""

    def peer(self, component: str, port: str) -> str:
        """``host:port`` under which other components reach ``component``'s ``port``."""

    def external_url(self, component: str, port: str) -> str:
        """The URL under which the host (browser, notebooks) reaches ``component``'s ``port``."""

    def config_dir(self, component: str) -> str:
        """The folder holding ``component``'s rendered config files, as the component sees it."""

    def data_dir(self, component: str) -> str:
        """The folder holding ``component``'s data, as the component sees it."""

    def service_logs_dir(self) -> str:
        """The folder where the ML services write their log files, as the shipper sees it."""


@dataclass(frozen=True)
class PortSpec:
    """A port a component opens; ``scheme`` is empty when the port has no URL of its own."""

    name: str
    default: int
    scheme: str = "http"


Renderer = Callable[[Placement], dict[str, str]]
Command = Callable[[Placement], list[str]]


@dataclass(frozen=True)
class ComponentSpec:
    """What a component is, independent of how it is run."""

    name: str
    title: str
    ports: tuple[PortSpec, ...]
    ready_path: str
    command: Command
    binary: Binary | None = None
    module: str | None = None
    image: str = ""
    local_image: str = ""
    configs: Renderer = field(default=lambda placement: {})
    #: URL names (as in ``Stack.url(name)``) mapped to the port they point at.
    urls: Mapping[str, str] = field(default_factory=dict)
    #: Only started when asked for, or when its binary exists (Grafana).
    optional: bool = False
    #: Components this one cannot run without (started with it).
    requires: tuple[str, ...] = ()
    #: The real server's binary, preferred over ``module`` (the embedded stand-in) when installed.
    real: Binary | None = None
    real_command: Command | None = None
    #: A path inside the container's image for the config folder (docker backend).
    container_config_dir: str = "/etc/lab"
    container_data_dir: str = "/var/lib/lab"

    @property
    def main_port(self) -> PortSpec:
        return self.ports[0]


def render_yaml(document: object) -> str:
    """YAML text of ``document`` in a stable, readable form."""
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False)


# --- Prometheus -------------------------------------------------------------------------------

#: Jobs of the default scrape configuration: job name -> (component, port, extra settings).
_SCRAPE_JOBS: dict[str, tuple[str, str, dict[str, object]]] = {
    "prometheus": ("prometheus", "http", {}),
    "alertmanager": ("alertmanager", "http", {}),
    "pushgateway": ("pushgateway", "http", {"honor_labels": True}),
    "node": ("node_exporter", "http", {}),
    "victoriametrics": ("victoriametrics", "http", {}),
    "loki": ("loki", "http", {}),
    "tempo": ("tempo", "http", {}),
    "shipper": ("shipper", "http", {}),
    "sinks": ("sinks", "http", {}),
    "dcgm": ("gpu", "http", {}),
}


def prometheus_config(
    placement: Placement,
    *,
    components: tuple[str, ...],
    scrape_interval: str,
    evaluation_interval: str,
) -> dict[str, object]:
    """The lab's default ``prometheus.yml`` as a document."""
    config_dir = placement.config_dir("prometheus")
    scrape_configs: list[dict[str, object]] = []
    for job, (component, port, extra) in _SCRAPE_JOBS.items():
        if component not in components:
            continue
        scrape_configs.append(
            {
                "job_name": job,
                **extra,
                "static_configs": [{"targets": [placement.peer(component, port)]}],
            }
        )
    scrape_configs.append(
        {
            "job_name": "lab-targets",
            "file_sd_configs": [
                {"files": [f"{config_dir}/file_sd/*.json"], "refresh_interval": "1s"}
            ],
        }
    )
    document: dict[str, object] = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": evaluation_interval,
            "external_labels": {"lab": "workbook"},
        },
        "rule_files": [f"{config_dir}/rules/*.yml"],
    }
    if "alertmanager" in components:
        document["alerting"] = {
            "alertmanagers": [
                {"static_configs": [{"targets": [placement.peer("alertmanager", "http")]}]}
            ]
        }
    if "victoriametrics" in components:
        document["remote_write"] = [
            {
                "url": f"http://{placement.peer('victoriametrics', 'http')}/api/v1/write",
                "queue_config": {"batch_send_deadline": "1s"},
            }
        ]
    document["scrape_configs"] = scrape_configs
    return document


def alertmanager_config(placement: Placement) -> dict[str, object]:
    """The lab's default ``alertmanager.yml``: everything to the webhook sink, quickly."""
    receiver: dict[str, object] = {"name": "lab-webhook"}
    if placement.has("sinks"):
        sinks = placement.peer("sinks", "http")
        receiver["webhook_configs"] = [
            {"url": f"http://{sinks}/webhook/lab-webhook", "send_resolved": True}
        ]
    return {
        "route": {
            "receiver": "lab-webhook",
            "group_by": ["alertname"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [receiver],
    }


def shipper_config(placement: Placement) -> dict[str, object]:
    """The default Promtail-style config: ship the ML services' log files to Loki."""
    return {
        "server": {
            "http_listen_address": placement.listen_host,
            "http_listen_port": placement.port("shipper", "http"),
        },
        "positions": {"filename": f"{placement.data_dir('shipper')}/positions.yaml"},
        "clients": [{"url": f"http://{placement.peer('loki', 'http')}/loki/api/v1/push"}],
        "scrape_configs": [
            {
                "job_name": "services",
                "static_configs": [
                    {
                        "targets": ["localhost"],
                        "labels": {
                            "job": "services",
                            "__path__": f"{placement.service_logs_dir()}/*.log",
                        },
                    }
                ],
            }
        ],
    }


def loki_config(view: Placement) -> dict[str, Any]:
    """A single-process Loki 2.9 config: filesystem storage, TSDB v13, structured metadata on."""
    data = view.data_dir("loki")
    return {
        "auth_enabled": False,
        "server": {
            "http_listen_address": view.listen_host,
            "http_listen_port": view.port("loki", "http"),
            "grpc_listen_port": 9096,
        },
        "common": {
            "instance_addr": "127.0.0.1",
            "path_prefix": data,
            "storage": {
                "filesystem": {
                    "chunks_directory": f"{data}/chunks",
                    "rules_directory": f"{data}/rules",
                }
            },
            "replication_factor": 1,
            "ring": {"kvstore": {"store": "inmemory"}},
        },
        "schema_config": {
            "configs": [
                {
                    "from": "2024-01-01",
                    "store": "tsdb",
                    "object_store": "filesystem",
                    "schema": "v13",
                    "index": {"prefix": "index_", "period": "24h"},
                }
            ]
        },
        "limits_config": {"allow_structured_metadata": True, "reject_old_samples": False},
        "analytics": {"reporting_enabled": False},
    }


def tempo_config(view: Placement) -> dict[str, Any]:
    """A single-process Tempo 2.3 config: OTLP gRPC and HTTP receivers, local storage."""
    data = view.data_dir("tempo")
    host = view.listen_host
    return {
        "server": {"http_listen_address": host, "http_listen_port": view.port("tempo", "http")},
        "distributor": {
            "receivers": {
                "otlp": {
                    "protocols": {
                        "grpc": {"endpoint": f"{host}:{view.port('tempo', 'otlp_grpc')}"},
                        "http": {"endpoint": f"{host}:{view.port('tempo', 'otlp_http')}"},
                    }
                }
            }
        },
        "ingester": {"max_block_duration": "5m"},
        "compactor": {"compaction": {"block_retention": "24h"}},
        "storage": {
            "trace": {
                "backend": "local",
                "wal": {"path": f"{data}/wal"},
                "local": {"path": f"{data}/blocks"},
            }
        },
        "usage_report": {"reporting_enabled": False},
    }


def _listen(placement: Placement, component: str, port: str = "http") -> str:
    return f"{placement.listen_host}:{placement.port(component, port)}"


def _prometheus_command(placement: Placement) -> list[str]:
    return [
        f"--config.file={placement.config_dir('prometheus')}/prometheus.yml",
        f"--storage.tsdb.path={placement.data_dir('prometheus')}",
        "--storage.tsdb.retention.time=7d",
        f"--web.listen-address={_listen(placement, 'prometheus')}",
        f"--web.external-url={placement.external_url('prometheus', 'http')}/",
        "--web.enable-lifecycle",
        "--web.enable-remote-write-receiver",
        "--rules.alert.resend-delay=1s",
        # Exemplars link a latency bucket to the trace that landed in it (exercise 04).
        "--enable-feature=exemplar-storage",
    ]


def _alertmanager_command(placement: Placement) -> list[str]:
    return [
        f"--config.file={placement.config_dir('alertmanager')}/alertmanager.yml",
        f"--storage.path={placement.data_dir('alertmanager')}",
        f"--web.listen-address={_listen(placement, 'alertmanager')}",
        f"--web.external-url={placement.external_url('alertmanager', 'http')}/",
        "--cluster.listen-address=",
    ]


def _pushgateway_command(placement: Placement) -> list[str]:
    return [
        f"--web.listen-address={_listen(placement, 'pushgateway')}",
        f"--persistence.file={placement.data_dir('pushgateway')}/pushgateway.data",
        "--persistence.interval=1s",
        "--web.enable-admin-api",
    ]


def _node_exporter_command(placement: Placement) -> list[str]:
    return [f"--web.listen-address={_listen(placement, 'node_exporter')}"]


def _victoriametrics_command(placement: Placement) -> list[str]:
    return [
        f"-httpListenAddr={_listen(placement, 'victoriametrics')}",
        f"-storageDataPath={placement.data_dir('victoriametrics')}",
        "-retentionPeriod=1",
        "-search.latencyOffset=1s",
    ]


def _loki_command(placement: Placement) -> list[str]:
    return [
        "--host",
        placement.listen_host,
        "--port",
        str(placement.port("loki", "http")),
        "--data-dir",
        placement.data_dir("loki"),
    ]


def _tempo_command(placement: Placement) -> list[str]:
    return [
        "--host",
        placement.listen_host,
        "--http-port",
        str(placement.port("tempo", "http")),
        "--otlp-grpc-port",
        str(placement.port("tempo", "otlp_grpc")),
        "--otlp-http-port",
        str(placement.port("tempo", "otlp_http")),
        "--data-dir",
        placement.data_dir("tempo"),
    ]


def _shipper_command(placement: Placement) -> list[str]:
    return ["--config", f"{placement.config_dir('shipper')}/shipper.yml"]


def _sinks_command(placement: Placement) -> list[str]:
    return [
        "--host",
        placement.listen_host,
        "--http-port",
        str(placement.port("sinks", "http")),
        "--smtp-port",
        str(placement.port("sinks", "smtp")),
        "--data-dir",
        placement.data_dir("sinks"),
    ]


def _gpu_command(placement: Placement) -> list[str]:
    return ["--host", placement.listen_host, "--port", str(placement.port("gpu", "http"))]


def _grafana_command(placement: Placement) -> list[str]:
    return [
        f"--homepath={placement.data_dir('grafana')}",
        f"cfg:server.http_addr={placement.listen_host}",
        f"cfg:server.http_port={placement.port('grafana', 'http')}",
        f"cfg:paths.provisioning={placement.config_dir('grafana')}/provisioning",
        f"cfg:paths.data={placement.data_dir('grafana')}",
    ]


SPECS: dict[str, ComponentSpec] = {
    spec.name: spec
    for spec in (
        ComponentSpec(
            name="prometheus",
            title="Prometheus",
            ports=(PortSpec("http", 9090),),
            ready_path="/-/ready",
            command=_prometheus_command,
            binary=binaries.PROMETHEUS,
            image="prom/prometheus:v2.48.0",
            local_image="localhost/lab/prometheus:debian",
            urls={"prometheus": "http"},
        ),
        ComponentSpec(
            name="alertmanager",
            title="Alertmanager",
            ports=(PortSpec("http", 9093),),
            ready_path="/-/ready",
            command=_alertmanager_command,
            binary=binaries.ALERTMANAGER,
            image="prom/alertmanager:v0.26.0",
            local_image="localhost/lab/alertmanager:debian",
            configs=lambda p: {"alertmanager.yml": render_yaml(alertmanager_config(p))},
            urls={"alertmanager": "http"},
        ),
        ComponentSpec(
            name="pushgateway",
            title="Pushgateway",
            ports=(PortSpec("http", 9091),),
            ready_path="/-/ready",
            command=_pushgateway_command,
            binary=binaries.PUSHGATEWAY,
            image="prom/pushgateway:v1.6.2",
            local_image="localhost/lab/pushgateway:debian",
            urls={"pushgateway": "http"},
        ),
        ComponentSpec(
            name="node_exporter",
            title="node_exporter",
            ports=(PortSpec("http", 9100),),
            ready_path="/metrics",
            command=_node_exporter_command,
            binary=binaries.NODE_EXPORTER,
            image="prom/node-exporter:v1.7.0",
            local_image="localhost/lab/node-exporter:debian",
            urls={"node_exporter": "http"},
        ),
        ComponentSpec(
            name="victoriametrics",
            title="VictoriaMetrics (long-term store)",
            ports=(PortSpec("http", 8428),),
            ready_path="/health",
            command=_victoriametrics_command,
            binary=binaries.VICTORIA_METRICS,
            image="victoriametrics/victoria-metrics:v1.96.0",
            local_image="localhost/lab/victoria-metrics:debian",
            urls={"victoriametrics": "http"},
        ),
        ComponentSpec(
            name="loki",
            title="Loki",
            ports=(PortSpec("http", 3100),),
            ready_path="/ready",
            command=_loki_command,
            module="lab_stack.embedded.loki",
            real=binaries.LOKI,
            real_command=lambda p: [f"-config.file={p.config_dir('loki')}/loki.yml"],
            image="grafana/loki:2.9.3",
            local_image="localhost/lab/embedded:latest",
            configs=lambda p: {"loki.yml": render_yaml(loki_config(p))},
            urls={"loki": "http"},
        ),
        ComponentSpec(
            name="tempo",
            title="Tempo",
            ports=(
                PortSpec("http", 3200),
                PortSpec("otlp_grpc", 4317),
                PortSpec("otlp_http", 4318),
            ),
            ready_path="/ready",
            command=_tempo_command,
            module="lab_stack.embedded.tempo",
            real=binaries.TEMPO,
            real_command=lambda p: [f"-config.file={p.config_dir('tempo')}/tempo.yml"],
            image="grafana/tempo:2.3.1",
            local_image="localhost/lab/embedded:latest",
            configs=lambda p: {"tempo.yml": render_yaml(tempo_config(p))},
            urls={"tempo": "http", "tempo_otlp_grpc": "otlp_grpc", "tempo_otlp_http": "otlp_http"},
        ),
        ComponentSpec(
            name="shipper",
            title="Log shipper (Promtail)",
            ports=(PortSpec("http", 9080),),
            ready_path="/ready",
            command=_shipper_command,
            module="lab_stack.embedded.shipper",
            requires=("loki",),
            real=binaries.PROMTAIL,
            real_command=lambda p: [f"-config.file={p.config_dir('shipper')}/shipper.yml"],
            image="grafana/promtail:2.9.3",
            local_image="localhost/lab/embedded:latest",
            configs=lambda p: {"shipper.yml": render_yaml(shipper_config(p))},
            urls={"shipper": "http"},
        ),
        ComponentSpec(
            name="sinks",
            title="Notification sinks (webhook, Slack, SMTP)",
            ports=(PortSpec("http", 9097), PortSpec("smtp", 2525, scheme="smtp")),
            ready_path="/ready",
            command=_sinks_command,
            module="lab_stack.sinks",
            image="localhost/lab/embedded:latest",
            local_image="localhost/lab/embedded:latest",
            urls={"sinks": "http", "smtp": "smtp"},
        ),
        ComponentSpec(
            name="gpu",
            title="GPU metrics (DCGM names)",
            ports=(PortSpec("http", 9400),),
            ready_path="/metrics",
            command=_gpu_command,
            module="ml_service.gpu",
            image="localhost/lab/embedded:latest",
            local_image="localhost/lab/embedded:latest",
            urls={"gpu": "http"},
        ),
        ComponentSpec(
            name="grafana",
            title="Grafana",
            ports=(PortSpec("http", 3000),),
            ready_path="/api/health",
            command=_grafana_command,
            binary=binaries.GRAFANA,
            image="grafana/grafana:10.2.2",
            local_image="",
            urls={"grafana": "http"},
            optional=True,
        ),
    )
}


def with_requirements(names: tuple[str, ...]) -> tuple[str, ...]:
    """``names`` plus every component they require, in the catalogue's start order."""
    wanted = set(names)
    pending = list(names)
    while pending:
        for required in SPECS[pending.pop()].requires:
            if required not in wanted:
                wanted.add(required)
                pending.append(required)
    return tuple(n for n in SPECS if n in wanted)


def component_names(*, include_optional: bool = False) -> tuple[str, ...]:
    """The names of the stack's components in start order."""
    return tuple(name for name, spec in SPECS.items() if include_optional or not spec.optional)
