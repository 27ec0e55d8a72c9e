"""Settings: the LAB_* variables, read in one place, validated with hints."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab_stack.errors import ConfigError
from lab_stack.settings import HOST, Settings


def test_defaults_are_the_lab_settings() -> None:
    """With no variables set, the stack runs natively-or-docker (auto) with 1 s intervals."""
    settings = Settings.from_env({})
    assert settings.backend == "auto"
    assert settings.scrape_interval == "1s"
    assert settings.state_file == settings.home / "state.json"
    assert HOST == "127.0.0.1"


def test_variables_are_read(tmp_path: Path) -> None:
    """Each documented variable changes its setting."""
    settings = Settings.from_env(
        {
            "LAB_HOME": str(tmp_path),
            "LAB_BACKEND": "native",
            "LAB_IMAGES": "local",
            "LAB_STARTUP_TIMEOUT": "45s",
            "LAB_SCRAPE_INTERVAL": "2s",
            "LAB_LOKI_RETENTION": "2h",
            "LAB_TEMPO_RETENTION_BYTES": "1000",
            "DOCKER_HOST": "unix:///tmp/x.sock",
        }
    )
    assert settings.home == tmp_path.resolve()
    assert settings.backend == "native"
    assert settings.images == "local"
    assert settings.startup_timeout == 45.0
    assert settings.scrape_interval == "2s"
    assert settings.loki_retention == 7200.0
    assert settings.tempo_retention_bytes == 1000
    assert settings.docker_host == "unix:///tmp/x.sock"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "LAB_BACKEND",
            "kubernetes",
            "LAB_BACKEND='kubernetes' is not one of auto, native, docker",
        ),
        ("LAB_STARTUP_TIMEOUT", "soon", "is not a duration"),
        ("LAB_LOKI_RETENTION_BYTES", "1GB", "is not a whole number of bytes"),
    ],
)
def test_bad_values_say_what_to_do(variable: str, value: str, message: str) -> None:
    """A malformed variable is a ConfigError naming the variable and the accepted values."""
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({variable: value})
