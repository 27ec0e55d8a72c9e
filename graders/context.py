"""What a check may look at: the running stack, the submission's folder and its kernel's processes.

Checks never ask the student's kernel what it did. They ask Prometheus (and the other backends),
and they find the student's services through Prometheus's scrape targets, keeping only the targets
whose port is listened on by the graded kernel's process tree (the operating system's word, not
the kernel's), so a student's other running kernels do not mix into the grade.

Example:
    >>> scope_query('sum(rate(ml_predictions_total{status="error"}[1m]))', ["host:8000"])
    'sum(rate(ml_predictions_total{instance=~"host:8000",status="error"}[1m]))'
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil

from lab_stack import Stack
from lab_stack.clients import Target

__all__ = [
    "GradingContext",
    "listening_ports",
    "owned_targets",
    "promql_regex",
    "recorded_answers",
    "scope_query",
    "target_metadata",
    "wait_until",
]


@dataclass
class GradingContext:
    """The live things a check may inspect.

    Attributes:
        stack: the lab stack the notebook ran against.
        workdir: the folder the notebook ran in (a temporary copy when graded).
        kernel_pid: the process that ran the notebook (its children count as the submission's).
        finished_at: Unix time when the notebook's last cell finished.
    """

    stack: Stack
    workdir: Path
    kernel_pid: int
    finished_at: float = field(default_factory=time.time)
    cache: dict[str, Any] = field(default_factory=dict)


def listening_ports(pid: int) -> set[int]:
    """TCP ports listened on by ``pid`` and its descendants (empty when the process is gone)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return set()
    ports: set[int] = set()
    for proc in procs:
        try:
            conns = proc.net_connections(kind="tcp")
        except psutil.Error:
            continue
        ports |= {c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN and c.laddr}
    return ports


def owned_targets(stack: Stack, job: str, pid: int) -> tuple[list[Target], list[Target]]:
    """The job's active targets split into (served by ``pid``'s process tree, everything else)."""
    ports = listening_ports(pid)
    mine: list[Target] = []
    others: list[Target] = []
    with stack.prometheus as prom:
        targets = prom.targets(job=job)
    for target in targets:
        port = urlsplit(target.scrape_url).port
        (mine if port in ports else others).append(target)
    return mine, others


def scope_query(expr: str, instances: Sequence[str], *, prefix: str = "ml_") -> str:
    """Restrict every selector of a metric named ``prefix...`` in ``expr`` to ``instances``.

    The student's PromQL is evaluated as written, but only over the graded kernel's targets.
    """
    if not instances:
        return expr
    pattern = promql_regex(instances)
    matcher = f'instance=~"{pattern}"'
    # a metric name: not preceded by a name character or a quote, and not followed by "(" (a function)
    name_re = re.compile(rf'(?<![\w"\'.:]){re.escape(prefix)}[A-Za-z0-9_:]*(?![\w(])(\s*\{{)?')

    def add(match: re.Match[str]) -> str:
        text = match.group(0)
        if match.group(1):  # has a selector already: insert first, keep the rest
            return text + matcher + ","
        return text + "{" + matcher + "}"

    return re.sub(r",\s*}", "}", name_re.sub(add, expr))


def promql_regex(values: Sequence[str]) -> str:
    """An alternation matching exactly ``values``, escaped for a PromQL double-quoted string."""
    return "|".join(re.escape(v) for v in values).replace("\\", "\\\\")


def target_metadata(stack: Stack, instance: str) -> list[dict[str, Any]]:
    """``/api/v1/targets/metadata`` for one target: ``metric``, ``type``, ``help``, ``unit``.

    The lab's typed client has no call for this endpoint yet; this is the smallest adapter.
    """
    url = f"{stack.url('prometheus')}/api/v1/targets/metadata"
    params = {"match_target": f'{{instance="{instance}"}}'}
    response = httpx.get(url, params=params, timeout=10.0, trust_env=False)
    response.raise_for_status()
    data: list[dict[str, Any]] = response.json().get("data") or []
    return data


def wait_until(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.25) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass; return its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def current_pid() -> int:
    """This process's id (the kernel's own, when checks run inside the notebook)."""
    return os.getpid()


def recorded_answers(path: Path, *, expected: str, hint: str) -> dict[str, str]:
    """The answers a notebook recorded in ``path`` (``graders.record_answers``), as strings.

    Raises :class:`graders.errors.CheckFailed` with ``expected`` and ``hint`` when the file is
    missing or is not JSON; anything but a JSON object reads as no answers.
    """
    from graders.errors import CheckFailed

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckFailed(
            expected=expected, found=f"no readable file ({type(exc).__name__})", hint=hint
        ) from None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
