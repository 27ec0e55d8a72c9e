"""The shipper's configuration: the subset of Promtail's YAML it understands, parsed and checked.

Understood: ``server`` (``http_listen_port``, ``http_listen_address``), ``positions``
(``filename``), ``clients[]`` (``url``, ``batchwait``, ``batchsize``, ``backoff_config``,
``external_labels``, ``tenant_id``, ``timeout``) and ``scrape_configs[]`` (``job_name``,
``static_configs[].labels`` with ``__path__`` and ``__path_exclude__``, ``pipeline_stages``
json / labels / timestamp / output). Anything that would change what is shipped but is not
understood is refused with :class:`~lab_stack.errors.ConfigError` naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab_stack.embedded.shipper.pipeline import check_stage
from lab_stack.errors import ConfigError

__all__ = [
    "BackoffConfig",
    "ClientConfig",
    "ScrapeConfig",
    "ShipperConfig",
    "StaticConfig",
    "load_config",
    "parse_config",
    "parse_duration",
]

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d|w|y)")
_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
    "y": 365 * 86400.0,
}
_LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

#: Top-level keys Promtail knows that do not change what this shipper ships; they are ignored.
_IGNORED_TOP = {"target_config", "limits_config", "global", "options", "tracing"}
_IGNORED_SERVER = {
    "grpc_listen_port",
    "grpc_listen_address",
    "log_level",
    "log_format",
    "register_instrumentation",
    "http_server_read_timeout",
    "http_server_write_timeout",
    "http_server_idle_timeout",
    "graceful_shutdown_timeout",
    "disable",
    "health_check_target",
    "enable_runtime_reload",
    "profiling_enabled",
}


def parse_duration(value: object, *, where: str) -> float:
    """Parse a Go/Prometheus duration (``500ms``, ``1m30s``) or a number of seconds."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: {value!r} is not a duration. Hint: write e.g. 1s or 500ms.")
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ConfigError(
            f"{where}: {value!r} is not a duration. Hint: write e.g. 1s, 500ms or 1m30s."
        )
    return total


@dataclass(frozen=True, slots=True)
class BackoffConfig:
    """Retry schedule of a client: doubling from ``min_period`` up to ``max_period``."""

    min_period: float = 0.5
    max_period: float = 300.0
    max_retries: int = 10  # 0 retries forever, as in dskit's backoff


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """One Loki push endpoint."""

    url: str
    batchwait: float = 1.0
    batchsize: int = 1024 * 1024
    timeout: float = 10.0
    backoff: BackoffConfig = field(default_factory=BackoffConfig)
    external_labels: dict[str, str] = field(default_factory=dict)
    tenant_id: str = ""


@dataclass(frozen=True, slots=True)
class StaticConfig:
    """Files named by ``__path__`` (a glob) and the labels their lines get."""

    path: str
    exclude: str
    labels: dict[str, str]


@dataclass(frozen=True, slots=True)
class ScrapeConfig:
    """One ``scrape_configs`` entry."""

    job_name: str
    static_configs: tuple[StaticConfig, ...]
    pipeline_stages: tuple[tuple[str, dict[str, Any]], ...]


@dataclass(frozen=True, slots=True)
class ShipperConfig:
    """The whole configuration."""

    http_listen_address: str
    http_listen_port: int
    positions_file: Path
    clients: tuple[ClientConfig, ...]
    scrape_configs: tuple[ScrapeConfig, ...]


def _mapping(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(
            f"{where} must be a mapping, got {type(value).__name__}. Hint: check the indentation."
        )
    return {str(k): v for k, v in value.items()}


def _list(value: object, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a list, got {type(value).__name__}. Hint: use '- '.")
    return value


def _unknown(data: dict[str, Any], known: set[str], where: str) -> None:
    extra = sorted(set(data) - known)
    if extra:
        raise ConfigError(
            f"{where}: unsupported field(s) {', '.join(extra)}. Hint: the embedded log shipper "
            f"understands only {', '.join(sorted(known))}; run a real Promtail for the rest."
        )


def _labels(value: object, where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, val in _mapping(value, where).items():
        if not _LABEL_NAME_RE.match(name):
            raise ConfigError(f"{where}: {name!r} is not a valid label name. Hint: use [a-zA-Z_].")
        out[name] = "" if val is None else str(val)
    return out


def _client(raw: object, where: str) -> ClientConfig:
    data = _mapping(raw, where)
    _unknown(
        data,
        {
            "url",
            "batchwait",
            "batchsize",
            "backoff_config",
            "external_labels",
            "tenant_id",
            "timeout",
            "headers",
            "drop_rate_limited_batches",
        },
        where,
    )
    url = data.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError(
            f"{where}.url: {url!r} is not an http(s) URL. Hint: write the push URL, e.g. "
            "http://127.0.0.1:3100/loki/api/v1/push."
        )
    back = _mapping(data.get("backoff_config"), f"{where}.backoff_config")
    _unknown(back, {"min_period", "max_period", "max_retries"}, f"{where}.backoff_config")
    backoff = BackoffConfig(
        min_period=parse_duration(back.get("min_period", "500ms"), where=f"{where}.min_period"),
        max_period=parse_duration(back.get("max_period", "5m"), where=f"{where}.max_period"),
        max_retries=int(back.get("max_retries", 10)),
    )
    if backoff.min_period <= 0 or backoff.max_period < backoff.min_period:
        raise ConfigError(
            f"{where}.backoff_config: min_period must be > 0 and <= max_period. "
            "Hint: e.g. min_period: 500ms, max_period: 5m."
        )
    try:
        batchsize = int(data.get("batchsize", 1024 * 1024))
    except (TypeError, ValueError):
        raise ConfigError(f"{where}.batchsize must be a number of bytes.") from None
    if batchsize <= 0:
        raise ConfigError(f"{where}.batchsize must be positive, got {batchsize}.")
    return ClientConfig(
        url=url,
        batchwait=parse_duration(data.get("batchwait", "1s"), where=f"{where}.batchwait"),
        batchsize=batchsize,
        timeout=parse_duration(data.get("timeout", "10s"), where=f"{where}.timeout"),
        backoff=backoff,
        external_labels=_labels(data.get("external_labels"), f"{where}.external_labels"),
        tenant_id=str(data.get("tenant_id") or ""),
    )


def _scrape(raw: object, where: str) -> ScrapeConfig:
    data = _mapping(raw, where)
    known = {"job_name", "static_configs", "pipeline_stages"}
    extra = sorted(set(data) - known)
    if extra:
        raise ConfigError(
            f"{where}: {', '.join(extra)} is not supported by the embedded log shipper (it reads "
            "static_configs with __path__ and pipeline_stages json/labels/timestamp/output). "
            "Hint: remove it, or run a real Promtail."
        )
    job = data.get("job_name")
    if not isinstance(job, str) or not job:
        raise ConfigError(f"{where}.job_name is missing. Hint: give each scrape config a name.")
    statics: list[StaticConfig] = []
    for j, sc in enumerate(_list(data.get("static_configs"), f"{where}.static_configs")):
        sw = f"{where}.static_configs[{j}]"
        scd = _mapping(sc, sw)
        _unknown(scd, {"targets", "labels"}, sw)
        raw_labels = _mapping(scd.get("labels"), f"{sw}.labels")
        path = raw_labels.pop("__path__", None)
        exclude = raw_labels.pop("__path_exclude__", None) or ""
        if not isinstance(path, str) or not path:
            raise ConfigError(
                f"{sw}.labels.__path__ is missing. Hint: name the files to tail, e.g. "
                "__path__: /var/log/app/*.log."
            )
        labels = _labels(
            {k: v for k, v in raw_labels.items() if not k.startswith("__")}, f"{sw}.labels"
        )
        statics.append(StaticConfig(path=path, exclude=str(exclude), labels=labels))
    if not statics:
        raise ConfigError(
            f"{where} ({job}) has no static_configs. Hint: add one with labels.__path__."
        )
    stages: list[tuple[str, dict[str, Any]]] = []
    for k, st in enumerate(_list(data.get("pipeline_stages"), f"{where}.pipeline_stages")):
        sw = f"{where}.pipeline_stages[{k}]"
        std = _mapping(st, sw)
        if len(std) != 1:
            raise ConfigError(f"{sw} must have exactly one stage name, got {sorted(std)}.")
        ((name, body),) = std.items()
        stages.append((name, check_stage(name, body, sw)))
    return ScrapeConfig(job_name=job, static_configs=tuple(statics), pipeline_stages=tuple(stages))


def parse_config(data: object, *, host: str | None = None) -> ShipperConfig:
    """Check a parsed YAML document and return the configuration it describes."""
    top = _mapping(data, "config")
    known = {"server", "positions", "clients", "client", "scrape_configs"}
    extra = sorted(set(top) - known - _IGNORED_TOP)
    if extra:
        raise ConfigError(
            f"config: unsupported top-level field(s) {', '.join(extra)}. Hint: the embedded log "
            f"shipper reads {', '.join(sorted(known))}."
        )
    server = _mapping(top.get("server"), "server")
    _unknown(server, {"http_listen_port", "http_listen_address"} | _IGNORED_SERVER, "server")
    try:
        port = int(server.get("http_listen_port", 9080))
    except (TypeError, ValueError):
        raise ConfigError("server.http_listen_port must be a port number.") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"server.http_listen_port {port} is out of range 0-65535.")
    address = host or str(server.get("http_listen_address") or "127.0.0.1")
    positions = _mapping(top.get("positions"), "positions")
    _unknown(positions, {"filename", "sync_period", "ignore_invalid_yaml"}, "positions")
    filename = positions.get("filename")
    if not isinstance(filename, str) or not filename:
        raise ConfigError(
            "positions.filename is missing. Hint: set it, e.g. /tmp/positions.yaml, so a restart "
            "resumes where it stopped."
        )
    raw_clients = _list(top.get("clients"), "clients")
    if top.get("client") is not None:
        raw_clients = [top["client"], *raw_clients]
    if not raw_clients:
        raise ConfigError(
            "clients is empty. Hint: add - url: http://127.0.0.1:3100/loki/api/v1/push"
        )
    clients = tuple(_client(c, f"clients[{i}]") for i, c in enumerate(raw_clients))
    scrapes = tuple(
        _scrape(s, f"scrape_configs[{i}]")
        for i, s in enumerate(_list(top.get("scrape_configs"), "scrape_configs"))
    )
    if not scrapes:
        raise ConfigError("scrape_configs is empty. Hint: add a job with static_configs.")
    return ShipperConfig(
        http_listen_address=address,
        http_listen_port=port,
        positions_file=Path(filename),
        clients=clients,
        scrape_configs=scrapes,
    )


def load_config(path: Path, *, host: str | None = None) -> ShipperConfig:
    """Read and check the YAML file at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc}. Hint: check the path.") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}. Hint: fix the syntax.") from exc
    try:
        return parse_config(data, host=host)
    except ConfigError as exc:
        raise ConfigError(f"config {path}: {exc}") from None
