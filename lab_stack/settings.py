"""One typed settings object, read from the ``LAB_*`` environment variables.

This is the only module of the project that reads ``os.environ`` for lab settings. Every variable
is listed in the README's settings table.

Example:
    >>> from lab_stack.settings import Settings
    >>> s = Settings.from_env({"LAB_BACKEND": "native"})
    >>> s.backend
    'native'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from lab_stack.errors import ConfigError

__all__ = ["HOST", "PROJECT_ROOT", "Settings", "get_settings"]

#: Every port the stack opens is bound to this address; nothing listens elsewhere.
HOST = "127.0.0.1"

#: The repository root (the folder holding ``lab_stack/``).
PROJECT_ROOT = Path(__file__).resolve().parent.parent

Backend = Literal["auto", "native", "docker", "attach"]
Images = Literal["auto", "upstream", "local"]


def _duration_seconds(name: str, raw: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for suffix in ("ms", "s", "m", "h"):
        if raw.endswith(suffix):
            number = raw[: -len(suffix)]
            break
    else:
        suffix, number = "s", raw
    try:
        return float(number) * units[suffix]
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not a duration. Hint: write seconds (30) or a Prometheus-style "
            "duration such as 500ms, 30s or 5m."
        ) from None


def _choice(name: str, raw: str, allowed: tuple[str, ...]) -> str:
    if raw not in allowed:
        raise ConfigError(
            f"{name}={raw!r} is not one of {', '.join(allowed)}. Hint: unset it or pick one."
        )
    return raw


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The lab's settings; build with :meth:`from_env`, change with :meth:`with_`.

    Attributes:
        home: folder for the stack's state, logs and data (``LAB_HOME``, default ``./.lab``).
        backend: ``auto`` (docker when an engine answers, else native), ``native``, ``docker`` or
            ``attach`` (components already run, e.g. a pod's sidecars: start none).
        images: which container images the docker backend uses: ``upstream`` (the module's pinned
            images), ``local`` (built here by ``lab images build``) or ``auto``.
        startup_timeout: seconds a component may take to become ready (``LAB_STARTUP_TIMEOUT``).
        scrape_interval: Prometheus scrape interval in the lab (``LAB_SCRAPE_INTERVAL``).
        evaluation_interval: Prometheus rule evaluation interval (``LAB_EVALUATION_INTERVAL``).
        loki_retention: how long the embedded Loki keeps entries (``LAB_LOKI_RETENTION``).
        loki_retention_bytes: size bound of the embedded Loki's store (``LAB_LOKI_RETENTION_BYTES``).
        tempo_retention: how long the embedded Tempo keeps traces (``LAB_TEMPO_RETENTION``).
        tempo_retention_bytes: size bound of the embedded Tempo's store.
        docker_host: the Docker API to talk to (``DOCKER_HOST``; empty means the default socket).
        engine_dir: where ``lab engine up`` keeps podman's API socket and log (``LAB_ENGINE_DIR``),
            shared by every stack of the checkout.
    """

    home: Path = field(default_factory=lambda: PROJECT_ROOT / ".lab")
    backend: Backend = "auto"
    images: Images = "auto"
    startup_timeout: float = 30.0
    scrape_interval: str = "1s"
    evaluation_interval: str = "1s"
    loki_retention: float = 24 * 3600.0
    loki_retention_bytes: int = 512 * 1024 * 1024
    tempo_retention: float = 24 * 3600.0
    tempo_retention_bytes: int = 512 * 1024 * 1024
    docker_host: str = ""
    engine_dir: Path = field(default_factory=lambda: PROJECT_ROOT / ".lab" / "engine")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the ``LAB_*`` variables (and ``DOCKER_HOST``) from ``environ`` (default: the process's)."""
        env = os.environ if environ is None else environ
        kwargs: dict[str, object] = {}
        if env.get("LAB_HOME"):
            kwargs["home"] = Path(env["LAB_HOME"]).expanduser().resolve()
        if env.get("LAB_BACKEND"):
            kwargs["backend"] = _choice(
                "LAB_BACKEND", env["LAB_BACKEND"], ("auto", "native", "docker", "attach")
            )
        if env.get("LAB_IMAGES"):
            kwargs["images"] = _choice(
                "LAB_IMAGES", env["LAB_IMAGES"], ("auto", "upstream", "local")
            )
        if env.get("LAB_STARTUP_TIMEOUT"):
            kwargs["startup_timeout"] = _duration_seconds(
                "LAB_STARTUP_TIMEOUT", env["LAB_STARTUP_TIMEOUT"]
            )
        for var, key in (
            ("LAB_SCRAPE_INTERVAL", "scrape_interval"),
            ("LAB_EVALUATION_INTERVAL", "evaluation_interval"),
        ):
            if env.get(var):
                _duration_seconds(var, env[var])  # validate
                kwargs[key] = env[var]
        for var, key in (
            ("LAB_LOKI_RETENTION", "loki_retention"),
            ("LAB_TEMPO_RETENTION", "tempo_retention"),
        ):
            if env.get(var):
                kwargs[key] = _duration_seconds(var, env[var])
        for var, key in (
            ("LAB_LOKI_RETENTION_BYTES", "loki_retention_bytes"),
            ("LAB_TEMPO_RETENTION_BYTES", "tempo_retention_bytes"),
        ):
            if env.get(var):
                try:
                    kwargs[key] = int(env[var])
                except ValueError:
                    raise ConfigError(
                        f"{var}={env[var]!r} is not a whole number of bytes."
                    ) from None
        if env.get("LAB_ENGINE_DIR"):
            kwargs["engine_dir"] = Path(env["LAB_ENGINE_DIR"]).expanduser().resolve()
        if env.get("DOCKER_HOST"):
            kwargs["docker_host"] = env["DOCKER_HOST"]
        return cls(**kwargs)  # type: ignore[arg-type]

    def with_(self, **changes: object) -> Settings:
        """Return a copy with ``changes`` applied."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def state_file(self) -> Path:
        """Where the running stack records its URLs and PIDs."""
        return self.home / "state.json"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def config_dir(self) -> Path:
        return self.home / "config"


def get_settings() -> Settings:
    """The settings of this process, read from its environment."""
    return Settings.from_env()
