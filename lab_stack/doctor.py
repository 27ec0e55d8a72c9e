"""``lab doctor``: the module's troubleshooting cases, diagnosed from the running stack."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from lab_stack import promtool
from lab_stack.components import SPECS, component_names
from lab_stack.errors import LabError
from lab_stack.native import NativeBackend
from lab_stack.ports import port_is_free
from lab_stack.settings import Settings, get_settings
from lab_stack.state import load_state

__all__ = ["Finding", "diagnose"]


@dataclass(frozen=True)
class Finding:
    """One diagnosis: ``level`` is ok, warn or fail; ``detail`` says what to do."""

    check: str
    level: str
    detail: str


def diagnose(*, settings: Settings | None = None) -> list[Finding]:
    """Run every check and return the findings (never raises for a finding)."""
    settings = settings or get_settings()
    findings: list[Finding] = []
    findings += _binaries()
    try:
        state = load_state(settings.state_file)
    except LabError as exc:
        return [*findings, Finding("state file", "fail", str(exc))]
    if state is None:
        findings.append(
            Finding(
                "stack", "warn", f"no stack is running under {settings.home}. Start it: `lab up`."
            )
        )
        findings += _ports_for_start()
        return findings
    backend = NativeBackend(settings)
    for name, record in state.components.items():
        if state.backend == "native" and not backend.is_alive(record):
            findings.append(
                Finding(
                    f"{name} process",
                    "fail",
                    f"pid {record.pid} is gone. Run `lab up` to restart it; `lab logs {name}` says why it died.",
                )
            )
    findings += _prometheus(state.urls())
    findings += _configs(settings)
    return findings


def _binaries() -> list[Finding]:
    out = []
    for name in component_names():
        spec = SPECS[name]
        if spec.binary is None or spec.module:
            continue
        path = spec.binary.find()
        if path:
            out.append(Finding(f"{name} binary", "ok", path))
        else:
            out.append(
                Finding(f"{name} binary", "fail", f"missing. Install: {spec.binary.install_hint()}")
            )
    return out


def _ports_for_start() -> list[Finding]:
    out = []
    for name in component_names():
        for port in SPECS[name].ports:
            if not port_is_free(port.default):
                out.append(
                    Finding(
                        f"port {port.default}",
                        "warn",
                        f"{name}'s usual port is taken by another program; `lab up` will use a free port instead "
                        f"(find the program: `ss -ltnp | grep :{port.default}`).",
                    )
                )
    return out


def _prometheus(urls: dict[str, str]) -> list[Finding]:
    url = urls.get("prometheus")
    if not url:
        return []
    try:
        data = httpx.get(f"{url}/api/v1/targets", timeout=3.0, trust_env=False).json()["data"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        return [Finding("prometheus", "fail", f"{url} does not answer ({exc}). Run `lab up`.")]
    out = []
    for target in data.get("activeTargets", []):
        job = target.get("labels", {}).get("job", "?")
        instance = target.get("labels", {}).get("instance", "?")
        if target.get("health") == "down":
            out.append(
                Finding(
                    f"target {job} {instance}",
                    "fail",
                    f"scrape failed: {target.get('lastError')}. Is the service running and is its /metrics "
                    "URL right? Check `lab status` and the URL you registered.",
                )
            )
        elif target.get("health") == "up":
            out.append(Finding(f"target {job}", "ok", instance))
    return out


def _configs(settings: Settings) -> list[Finding]:
    out = []
    config = settings.config_dir / "prometheus" / "prometheus.yml"
    if config.exists():
        result = promtool.check_config(config, raise_on_error=False)
        out.append(
            Finding(
                "prometheus.yml",
                "ok" if result.ok else "fail",
                "promtool check config passed" if result.ok else result.output,
            )
        )
    rules = sorted((settings.config_dir / "prometheus" / "rules").glob("*.yml"))
    if rules:
        result = promtool.check_rules(rules, raise_on_error=False)
        out.append(
            Finding(
                "rules",
                "ok" if result.ok else "fail",
                f"{len(rules)} file(s) pass promtool" if result.ok else result.output,
            )
        )
    am = settings.config_dir / "alertmanager" / "alertmanager.yml"
    if am.exists():
        result = promtool.check_alertmanager_config(am, raise_on_error=False)
        out.append(
            Finding(
                "alertmanager.yml",
                "ok" if result.ok else "fail",
                "amtool check-config passed" if result.ok else result.output,
            )
        )
    return out
