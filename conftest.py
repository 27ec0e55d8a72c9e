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

# Imported while the session is young, not lazily inside the docker fixture: CPython 3.11's
# module lock can raise KeyError(<thread id>) when a garbage collector finalizer imports during
# another import (python/cpython#87712; fixed in 3.12), and by the time the docker tests run a
# worker has made plenty of such garbage (a failed fixture then errors every docker test).
import testcontainers.core.container  # noqa: F401

import lab_stack
from lab_stack import ports
from lab_stack.settings import Settings
from tests.conftest_helpers import docker_reason


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist each worker picks stack ports from its own range (no two stacks collide)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw"):
        index = int(worker[2:])
        ports.use_range(10000 + 2500 * index, 12500 + 2500 * index)


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
    settings = Settings.from_env().with_(
        home=tmp_path / "lab", backend=_backend(), startup_timeout=30.0
    )
    try:
        yield settings
    finally:
        lab_stack.down(settings=settings)


@pytest.fixture(scope="session")
def docker_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings of the session's container stack; skips (with the reason) where no engine answers."""
    settings = Settings.from_env().with_(
        home=tmp_path_factory.mktemp("lab-docker"), backend="docker"
    )
    reason = docker_reason(settings)
    if reason:
        pytest.skip(f"needs a container engine: {reason} (run `make engine`)")
    return settings


@pytest.fixture(scope="session")
def docker_stack(docker_settings: Settings) -> Iterator[lab_stack.Stack]:
    """The session's stack as containers (podman's Docker API here, Docker elsewhere)."""
    try:
        yield lab_stack.up(settings=docker_settings, free_ports=True)
    finally:
        lab_stack.down(settings=docker_settings)


@pytest.fixture(params=["native", "docker"])
def any_stack(request: pytest.FixtureRequest) -> lab_stack.Stack:
    """The session's stack of each backend in turn (docker skipped where no engine answers)."""
    name = "stack" if request.param == "native" else "docker_stack"
    running: lab_stack.Stack = request.getfixturevalue(name)
    return running
