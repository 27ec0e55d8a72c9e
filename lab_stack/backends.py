"""Which backend runs the stack: ``LAB_BACKEND=auto|native|docker|attach``.

``auto`` picks docker only when a real Docker engine answers (``DOCKER_HOST`` or the default
socket). ``docker`` also accepts the project's podman service (``lab engine up``).
"""

from __future__ import annotations

from lab_stack.engine import Engine
from lab_stack.errors import EngineUnavailable
from lab_stack.settings import Settings

__all__ = ["engine_answers", "resolve_backend"]


def engine_answers(settings: Settings, *, timeout: float = 10.0) -> bool:
    """True when a Docker engine answers at ``DOCKER_HOST`` (or the default socket)."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:  # pragma: no cover - docker is a dependency
        return False
    try:
        if settings.docker_host:
            client = docker.DockerClient(base_url=settings.docker_host, timeout=int(timeout))
        else:
            client = docker.from_env(timeout=int(timeout))
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (DockerException, OSError, ValueError):
        return False


def resolve_backend(settings: Settings) -> str:
    """``native``, ``docker`` or ``attach`` (:mod:`lab_stack.attach`) for these settings.

    Raises:
        EngineUnavailable: ``docker`` was asked for and no engine answers.
    """
    if settings.backend in ("native", "attach"):
        return settings.backend
    if settings.backend == "docker":
        if engine_answers(settings) or (not settings.docker_host and Engine(settings).answers()):
            return "docker"
        raise EngineUnavailable(
            "LAB_BACKEND=docker, but no Docker engine answers"
            + (f" at {settings.docker_host}" if settings.docker_host else "")
            + ". Hint: use the native backend (`lab up --backend native`, or unset LAB_BACKEND), "
            "or start an engine (Docker, or podman's service: `lab engine up`)."
        )
    return "docker" if engine_answers(settings) else "native"
