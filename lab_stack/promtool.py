"""promtool and amtool, run before any file reaches a running Prometheus or Alertmanager."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lab_stack import binaries
from lab_stack.errors import PromtoolError

__all__ = [
    "ToolResult",
    "check_alertmanager_config",
    "check_config",
    "check_metrics",
    "check_rules",
    "routes_test",
    "test_rules",
]


@dataclass(frozen=True)
class ToolResult:
    """What a promtool/amtool run printed, and its exit status."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return (self.stdout + ("\n" if self.stdout and self.stderr else "") + self.stderr).strip()

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def _run(argv: Sequence[str], *, stdin: str | None = None, timeout: float = 60.0) -> ToolResult:
    completed = subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    return ToolResult(completed.returncode, completed.stdout, completed.stderr)


def _require_ok(result: ToolResult, what: str, hint: str) -> ToolResult:
    if not result.ok:
        raise PromtoolError(
            f"{what} was rejected:\n{result.output}\nHint: {hint}", output=result.output
        )
    return result


def check_config(path: str | Path, *, raise_on_error: bool = True) -> ToolResult:
    """``promtool check config PATH`` (also checks the rule files it names)."""
    result = _run([binaries.PROMTOOL.require(), "check", "config", str(path)])
    if raise_on_error:
        _require_ok(
            result, f"Prometheus config {path}", "fix the line promtool names and apply it again."
        )
    return result


def check_rules(paths: Sequence[str | Path], *, raise_on_error: bool = True) -> ToolResult:
    """``promtool check rules PATH...``."""
    result = _run([binaries.PROMTOOL.require(), "check", "rules", *map(str, paths)])
    if raise_on_error:
        _require_ok(
            result,
            f"rules file(s) {', '.join(map(str, paths))}",
            "fix the rule promtool names (indentation, PromQL syntax, `for:` duration) and apply again.",
        )
    return result


def test_rules(
    paths: Sequence[str | Path], *, raise_on_error: bool = False, timeout: float = 120.0
) -> ToolResult:
    """``promtool test rules PATH...`` (unit tests of alerting and recording rules)."""
    result = _run([binaries.PROMTOOL.require(), "test", "rules", *map(str, paths)], timeout=timeout)
    if raise_on_error:
        _require_ok(
            result, f"rule tests {', '.join(map(str, paths))}", "read the FAILED lines above."
        )
    return result


def check_metrics(exposition: str) -> ToolResult:
    """``promtool check metrics`` on an exposition text (exit 3 on lint problems)."""
    return _run([binaries.PROMTOOL.require(), "check", "metrics"], stdin=exposition)


def check_alertmanager_config(path: str | Path, *, raise_on_error: bool = True) -> ToolResult:
    """``amtool check-config PATH``."""
    result = _run([binaries.AMTOOL.require(), "check-config", str(path)])
    if raise_on_error:
        _require_ok(
            result, f"Alertmanager config {path}", "fix what amtool names and apply it again."
        )
    return result


def routes_test(
    path: str | Path, labels: dict[str, str], *, expect: Sequence[str] | None = None
) -> ToolResult:
    """``amtool config routes test``: which receivers alerts with ``labels`` reach."""
    argv = [binaries.AMTOOL.require(), "config", "routes", "test", f"--config.file={path}"]
    if expect is not None:
        argv.append(f"--verify.receivers={','.join(expect)}")
    argv += [f"{key}={value}" for key, value in labels.items()]
    return _run(argv)
