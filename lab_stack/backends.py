"""Which backend runs the stack: ``LAB_BACKEND=auto|native|docker``."""

from __future__ import annotations

from lab_stack.errors import EngineUnavailable
from lab_stack.settings import Settings

__all__ = ["engine_answers", "resolve_backend"]


def engine_answers(settings: Settings, *, timeout: float = 2.0) -> bool:
    """True when a Docker-compatible engine answers at ``DOCKER_HOST`` (or the default socket)."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:  # pragma: no cover - docker is a dependency
        return False
    try:
        client = docker.DockerClient(base_url=settings.docker_host or None, timeout=int(timeout)) \
            if settings.docker_host else docker.from_env(timeout=int(timeout))
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (DockerException, OSError, ValueError):
        return False


def resolve_backend(settings: Settings) -> str:
    """``native`` or ``docker`` for these settings.

    Raises:
        EngineUnavailable: ``docker`` was asked for and no engine answers.
    """
    if settings.backend == "native":
        return "native"
    if settings.backend == "docker":
        if not engine_answers(settings):
            raise EngineUnavailable(
                "LAB_BACKEND=docker, but no Docker engine answers"
                + (f" at {settings.docker_host}" if settings.docker_host else "")
                + ". Hint: use the native backend (`lab up --backend native`, or unset LAB_BACKEND), "
                "or start an engine (Docker, or podman's service: `lab engine up`)."
            )
        return "docker"
    return "docker" if engine_answers(settings) else "native"
