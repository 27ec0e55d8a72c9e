"""The shipper's config parsing, pipeline stages and positions file (no processes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lab_stack.embedded.shipper import (
    Pipeline,
    Position,
    parse_config,
    read_positions,
    write_positions,
)
from lab_stack.embedded.shipper.config import parse_duration
from lab_stack.embedded.shipper.pipeline import check_stage, compile_time_format
from lab_stack.errors import ConfigError

BASE = {
    "server": {"http_listen_port": 0, "grpc_listen_port": 0},
    "positions": {"filename": "/tmp/positions.yaml"},
    "clients": [{"url": "http://127.0.0.1:3100/loki/api/v1/push"}],
    "scrape_configs": [
        {
            "job_name": "app",
            "static_configs": [
                {"targets": ["localhost"], "labels": {"job": "app", "__path__": "/var/log/*.log"}}
            ],
        }
    ],
}


def _with(**changes: object) -> dict[str, object]:
    cfg = yaml.safe_load(yaml.safe_dump(BASE))
    cfg.update(changes)
    return cfg


def _pipeline(*stages: dict[str, object]) -> Pipeline:
    return Pipeline(
        [(name, check_stage(name, body, "t")) for s in stages for name, body in s.items()]
    )


def test_promtail_defaults_are_applied() -> None:
    """A minimal Promtail config gets Promtail's client defaults and a loopback listen address."""
    cfg = parse_config(BASE)
    (client,) = cfg.clients
    assert (client.batchwait, client.batchsize) == (1.0, 1024 * 1024)
    assert (client.backoff.min_period, client.backoff.max_period, client.backoff.max_retries) == (
        0.5,
        300.0,
        10,
    )
    assert cfg.http_listen_address == "127.0.0.1"
    assert cfg.scrape_configs[0].static_configs[0].path == "/var/log/*.log"
    assert cfg.scrape_configs[0].static_configs[0].labels == {"job": "app"}


def test_client_options_are_read() -> None:
    """batchwait, batchsize, backoff_config, external_labels and tenant_id are read."""
    client = {
        "url": "http://127.0.0.1:1/loki/api/v1/push",
        "batchwait": "200ms",
        "batchsize": 2048,
        "backoff_config": {"min_period": "100ms", "max_period": "1m30s", "max_retries": 0},
        "external_labels": {"host": "lab"},
        "tenant_id": "team-a",
    }
    (c,) = parse_config(_with(clients=[client])).clients
    assert (c.batchwait, c.batchsize, c.tenant_id) == (0.2, 2048, "team-a")
    assert (c.backoff.min_period, c.backoff.max_period, c.backoff.max_retries) == (0.1, 90.0, 0)
    assert c.external_labels == {"host": "lab"}


def test_host_override_wins() -> None:
    """The --host override replaces server.http_listen_address."""
    cfg = _with(server={"http_listen_address": "0.0.0.0", "http_listen_port": 9080})
    assert parse_config(cfg, host="127.0.0.1").http_listen_address == "127.0.0.1"


@pytest.mark.parametrize(
    ("mutation", "match"),
    [
        ({"positions": {}}, "positions.filename is missing"),
        ({"clients": []}, "clients is empty"),
        ({"clients": [{"url": "localhost:3100"}]}, "not an http"),
        ({"clients": [{"url": "http://x/push", "batchwait": "soon"}]}, "not a duration"),
        ({"scrape_configs": [{"job_name": "a", "static_configs": [{"labels": {}}]}]}, "__path__"),
        (
            {"scrape_configs": [{"job_name": "k", "kubernetes_sd_configs": [{}]}]},
            "kubernetes_sd_configs is not supported",
        ),
        ({"limits": {}}, "unsupported top-level"),
    ],
)
def test_bad_configs_are_refused_with_a_hint(mutation: dict[str, object], match: str) -> None:
    """Configs the shipper cannot honour raise ConfigError saying what and with a hint."""
    with pytest.raises(ConfigError, match=match) as info:
        parse_config(_with(**mutation))
    assert "Hint:" in str(info.value) or "must" in str(info.value)


@pytest.mark.parametrize("stage", ["regex", "match", "drop", "template", "cri", "multiline"])
def test_unsupported_stages_are_named(stage: str) -> None:
    """Any pipeline stage but json/labels/timestamp/output is refused, naming the stage."""
    cfg = _with()
    cfg["scrape_configs"][0]["pipeline_stages"] = [
        {"json": {"expressions": {"a": ""}}},
        {stage: {}},
    ]  # type: ignore[index]
    with pytest.raises(
        ConfigError, match=rf"pipeline_stages\[1\]: pipeline stage '{stage}' is not"
    ):
        parse_config(cfg)


def test_durations_parse_like_go() -> None:
    """Go durations, plain numbers and compound durations parse to seconds."""
    assert parse_duration("1m30s", where="x") == 90.0
    assert parse_duration("250ms", where="x") == 0.25
    assert parse_duration(2, where="x") == 2.0
    with pytest.raises(ConfigError, match="not a duration"):
        parse_duration("5 minutes", where="x")


@pytest.mark.parametrize(
    ("fmt", "value", "expected_ns"),
    [
        ("RFC3339", "2024-05-01T10:00:00Z", 1714557600_000000000),
        ("RFC3339", "2024-05-01T12:00:00+02:00", 1714557600_000000000),
        ("RFC3339Nano", "2024-05-01T10:00:00.123456789Z", 1714557600_123456789),
        ("Unix", "1714557600", 1714557600_000000000),
        ("Unix", "1714557600.25", 1714557600_250000000),
        ("UnixMs", "1714557600123", 1714557600_123000000),
        ("UnixNs", "1714557600123456789", 1714557600_123456789),
        ("2006-01-02 15:04:05", "2024-05-01 10:00:00", 1714557600_000000000),
        ("2006-01-02 15:04:05.000", "2024-05-01 10:00:00.042", 1714557600_042000000),
        ("02/Jan/2006:15:04:05 -0700", "01/May/2024:12:00:00 +0200", 1714557600_000000000),
        ("RFC1123Z", "Wed, 01 May 2024 10:00:00 +0000", 1714557600_000000000),
    ],
)
def test_timestamp_formats(fmt: str, value: str, expected_ns: int) -> None:
    """Named formats, Unix variants and Go layouts parse to the right nanosecond."""
    assert compile_time_format(fmt)(value) == expected_ns


def test_go_layout_with_location() -> None:
    """A layout without a zone is read in the configured location."""
    parse = compile_time_format("2006-01-02 15:04:05", "Europe/Berlin")
    assert parse("2024-05-01 12:00:00") == 1714557600_000000000
    with pytest.raises(ConfigError, match="time zone"):
        compile_time_format("2006-01-02", "Mars/Olympus")


def test_json_labels_timestamp_output_pipeline() -> None:
    """json extracts (nested too), labels promote, timestamp sets the time, output rewrites."""
    p = _pipeline(
        {"json": {"expressions": {"level": "", "ts": "time", "msg": "", "user": "ctx.user"}}},
        {"labels": {"level": None, "user": None}},
        {"timestamp": {"source": "ts", "format": "RFC3339"}},
        {"output": {"source": "msg"}},
    )
    line = '{"level":"error","time":"2024-05-01T10:00:00Z","msg":"boom","ctx":{"user":7}}'
    entry = p.process(line, 5, {"job": "app"})
    assert entry is not None
    assert entry.labels == {"job": "app", "level": "error", "user": "7"}
    assert entry.timestamp_ns == 1714557600_000000000
    assert entry.line == "boom"


def test_non_json_lines_pass_unless_drop_malformed() -> None:
    """A line that is not JSON is shipped unchanged, or dropped with drop_malformed."""
    keep = _pipeline({"json": {"expressions": {"level": ""}}}, {"labels": {"level": ""}})
    entry = keep.process("plain text", 1, {})
    assert entry is not None and (entry.line, entry.labels) == ("plain text", {})
    drop = _pipeline({"json": {"expressions": {"level": ""}, "drop_malformed": True}})
    assert drop.process("plain text", 1, {}) is None


def test_positions_round_trip_in_promtail_shape(tmp_path: Path) -> None:
    """Positions are written as Promtail's `positions: {path: "offset"}` and read back."""
    f = tmp_path / "positions.yaml"
    write_positions(f, [Position("/var/log/a.log", 42, 1, 99), Position("/b.log", 0)])
    raw = yaml.safe_load(f.read_text())
    assert raw["positions"] == {"/var/log/a.log": "42", "/b.log": "0"}
    assert read_positions(f)["/var/log/a.log"] == Position("/var/log/a.log", 42, 1, 99)
    assert read_positions(tmp_path / "missing.yaml") == {}
    f.write_text("positions: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_positions(f)


def test_check_config_cli(tmp_path: Path) -> None:
    """--check-config exits 0 on a good file and 1 naming the problem on a bad one."""
    good = tmp_path / "good.yml"
    good.write_text(yaml.safe_dump(BASE))
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "lab_stack.embedded.shipper",
            "--config",
            str(good),
            "--check-config",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ok.returncode == 0 and "is valid" in ok.stdout
    bad_cfg = _with()
    bad_cfg["scrape_configs"][0]["pipeline_stages"] = [{"regex": {"expression": ".*"}}]  # type: ignore[index]
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump(bad_cfg))
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "lab_stack.embedded.shipper",
            "--config",
            str(bad),
            "--check-config",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode == 1
    assert "pipeline stage 'regex' is not supported" in refused.stderr


def test_public_names_are_pinned() -> None:
    """The shipper package exports exactly its documented names."""
    import lab_stack.embedded.shipper as shipper

    assert sorted(shipper.__all__, key=str.lower) == [
        "load_config",
        "parse_config",
        "Pipeline",
        "Position",
        "read_positions",
        "Shipper",
        "ShipperConfig",
        "ShipperMetrics",
        "SUPPORTED_STAGES",
        "write_positions",
    ]
