"""Fixtures for the embedded Tempo's tests: real ``python -m lab_stack.embedded.tempo``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tempo_proc import TempoProcess


@pytest.fixture(scope="module")
def tempo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TempoProcess]:
    """One embedded Tempo shared by a test module."""
    proc = TempoProcess(tmp_path_factory.mktemp("tempo") / "data")
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def tempo_factory(tmp_path: Path) -> Iterator[type[TempoProcess]]:
    """Start embedded Tempos on demand (stopped at the end of the test)."""
    started: list[TempoProcess] = []

    class _Factory(TempoProcess):
        def start(self, timeout: float = 20.0) -> None:
            started.append(self)
            super().start(timeout)

    try:
        yield _Factory
    finally:
        for proc in started:
            proc.stop()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    """One keep-alive HTTP client per module (fast hypothesis loops)."""
    with httpx.Client(timeout=10) as c:
        yield c
