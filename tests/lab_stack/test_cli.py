"""The `lab` CLI, driven as a user would (click's CliRunner), against real processes."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

import lab_stack
from lab_stack.binaries import LOKI
from lab_stack.cli import main
from lab_stack.components import SPECS
from lab_stack.doctor import diagnose
from lab_stack.native import NativeBackend, NativePlacement
from lab_stack.settings import Settings


def _env(settings: Settings) -> dict[str, str]:
    return {"LAB_HOME": str(settings.home), "LAB_BACKEND": "native"}


def test_status_json_lists_every_component_with_its_url(stack: lab_stack.Stack) -> None:
    """`lab status --json` reports each component ready with its URL and exits 0."""
    result = CliRunner().invoke(main, ["status", "--json"], env=_env(stack.settings))
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["running"] is True
    states = {c["name"]: c["state"] for c in report["components"]}
    assert set(states.values()) == {"ready"}
    assert report["urls"]["prometheus"] == stack.url("prometheus")


def test_status_table_and_urls(stack: lab_stack.Stack) -> None:
    """`lab status` draws a table; `lab urls` prints NAME=URL lines a shell can read."""
    runner = CliRunner()
    table = runner.invoke(main, ["status"], env=_env(stack.settings))
    assert table.exit_code == 0
    assert "prometheus" in table.output and "ready" in table.output
    urls = runner.invoke(main, ["urls"], env=_env(stack.settings))
    lines = dict(line.split("=", 1) for line in urls.output.splitlines())
    assert lines["loki"] == stack.url("loki")


def test_logs_prints_a_components_log(stack: lab_stack.Stack) -> None:
    """`lab logs prometheus` prints the last lines of Prometheus's log; an unknown name is an error."""
    runner = CliRunner()
    result = runner.invoke(main, ["logs", "prometheus", "-n", "5"], env=_env(stack.settings))
    assert result.exit_code == 0
    assert result.output.strip()
    unknown = runner.invoke(main, ["logs", "grafanax"], env=_env(stack.settings))
    assert unknown.exit_code == 1
    assert "known logs" in unknown.output


def test_status_without_a_stack_says_how_to_start_one(tmp_path: Path) -> None:
    """With nothing running, `lab status` exits 1 and names `make up`."""
    result = CliRunner().invoke(main, ["status"], env={"LAB_HOME": str(tmp_path)})
    assert result.exit_code == 1
    assert "make up" in result.output


def test_doctor_reports_a_target_down_with_prometheus_last_error(stack: lab_stack.Stack) -> None:
    """A registered target nobody serves shows as FAIL with Prometheus's lastError."""
    stack.register_target("doctor-probe", "http://127.0.0.1:9/metrics")
    try:
        from tests.lab_stack.helpers import eventually

        def failing() -> list[str]:
            return [
                f.detail
                for f in diagnose(settings=stack.settings)
                if "doctor-probe" in f.check and f.level == "fail"
            ]

        details = eventually(failing, timeout=15, what="the probe target to be reported down")
        assert "connection refused" in details[0]
    finally:
        stack.unregister_target("doctor-probe")


def test_doctor_reports_a_rejected_rules_file(stack: lab_stack.Stack) -> None:
    """A broken file in the rules folder is reported with promtool's message."""
    broken = stack.rules_dir / "zz-broken.yml"
    broken.write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: rate(up[5m]\n"
    )
    try:
        findings = {f.check: f for f in diagnose(settings=stack.settings)}
        assert findings["rules"].level == "fail"
        assert "zz-broken.yml" in findings["rules"].detail
    finally:
        broken.unlink()


def test_doctor_reports_a_taken_port_and_a_missing_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no stack, doctor warns about a taken default port and fails a missing binary."""
    import socket

    settings = Settings.from_env({}).with_(home=tmp_path)
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            holder.bind(("127.0.0.1", SPECS["pushgateway"].main_port.default))
        except OSError:
            pass  # already taken by something else: the warning is expected either way
        else:
            holder.listen()
        monkeypatch.setenv("PATH", "/nonexistent")
        findings = diagnose(settings=settings)
    taken = [f for f in findings if f.check == f"port {SPECS['pushgateway'].main_port.default}"]
    assert taken and taken[0].level == "warn" and "free port" in taken[0].detail
    missing = [f for f in findings if f.check == "prometheus binary"]
    assert missing[0].level == "fail" and "apt-get install prometheus" in missing[0].detail


def test_a_loki_that_is_not_grafana_loki_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Debian's `loki` (a genetics program) is ignored; a genuine Loki binary would be preferred."""
    fake = tmp_path / "loki"
    fake.write_text("#!/bin/sh\necho 'Loki - MCMC linkage analysis on general pedigrees'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    settings = Settings.from_env({}).with_(home=tmp_path / "lab")
    placement = NativePlacement(settings, {"loki": {"http": 3100}})
    assert LOKI.find() is None
    assert NativeBackend(settings).command(SPECS["loki"], placement)[1:3] == [
        "-m",
        "lab_stack.embedded.loki",
    ]

    fake.write_text("#!/bin/sh\necho 'loki, version 2.9.3 (branch: HEAD)'\n")
    from lab_stack.binaries import _reports

    _reports.cache_clear()
    command = NativeBackend(settings).command(SPECS["loki"], placement)
    assert command[0] == str(fake)
    assert command[1].endswith("/loki/loki.yml")
    _reports.cache_clear()


def test_apply_refuses_a_bad_rules_file_from_the_cli(
    stack: lab_stack.Stack, tmp_path: Path
) -> None:
    """`lab apply rules bad.yml` exits 1 with promtool's message and changes nothing."""
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: broken\n    rules:\n      - alert: B\n        expr: sum(\n")
    result = CliRunner().invoke(main, ["apply", "rules", str(bad)], env=_env(stack.settings))
    assert result.exit_code == 1
    assert "rejected" in result.output
    groups = httpx.get(f"{stack.url('prometheus')}/api/v1/rules").json()["data"]["groups"]
    assert "broken" not in [g["name"] for g in groups]
