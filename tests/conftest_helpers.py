"""Helpers shared by test modules that need to know whether the docker backend can run."""

from __future__ import annotations

from lab_stack.settings import Settings


def docker_reason(settings: Settings) -> str | None:
    """Why the docker backend cannot run with ``settings`` (None when it can)."""
    from lab_stack.backends import resolve_backend
    from lab_stack.errors import LabError

    try:
        resolve_backend(settings.with_(backend="docker"))
    except LabError as exc:
        return str(exc).split(". Hint")[0]
    return None
