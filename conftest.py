"""Root fixtures: one real lab stack per test session, on free ports, in a temporary home.

The stack never touches a stack a student has running (its own ``LAB_HOME``, free ports), waits on
every component's readiness URL before tests run, and is stopped in ``finally``.
``LAB_TEST_BACKEND=docker`` runs the same tests against the container backend.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import lab_stack
from lab_stack.settings import Settings


def _backend() -> str:
    # The one place tests pick a backend; the library itself reads LAB_* through Settings.
    return os.environ.get("LAB_TEST_BACKEND", "native")


@pytest.fixture(scope="session")
def lab_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings of the session's stack: a fresh home, the backend under test."""
    home: Path = tmp_path_factory.mktemp("lab-home")
    return Settings.from_env().with_(home=home, backend=_backend())


@pytest.fixture(scope="session")
def stack(lab_settings: Settings) -> Iterator[lab_stack.Stack]:
    """The session's running stack (every component ready)."""
    try:
        running = lab_stack.up(settings=lab_settings, free_ports=True)
        yield running
    finally:
        lab_stack.down(settings=lab_settings)


@pytest.fixture
def fresh_settings(tmp_path: Path) -> Iterator[Settings]:
    """Settings for a test that starts and stops its own stack; stopped afterwards whatever happens."""
    settings = Settings.from_env().with_(home=tmp_path / "lab", backend=_backend(), startup_timeout=30.0)
    try:
        yield settings
    finally:
        lab_stack.down(settings=settings)
