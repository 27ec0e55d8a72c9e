"""Find the executables of the native backend, under their upstream or Debian names."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from dataclasses import dataclass

from lab_stack.errors import BinaryNotFound

__all__ = ["Binary", "find"]


@dataclass(frozen=True)
class Binary:
    """An executable known by one or more names, with the packages that ship it.

    ``version_marker``, when set, must appear in the output of ``BINARY -version`` for the binary
    to count as found (Debian's ``loki`` is a genetics program, not Grafana Loki).
    """

    names: tuple[str, ...]
    debian_package: str
    brew_formula: str
    version_marker: str = ""

    def install_hint(self) -> str:
        """How to install this binary on the current platform."""
        if sys.platform == "darwin":
            return f"brew install {self.brew_formula}"
        return (
            f"sudo apt-get install {self.debian_package} (or run `make setup`), or put the upstream "
            f"`{self.names[0]}` binary on PATH"
        )

    def find(self) -> str | None:
        """The path of the first name found on PATH (and genuine, see ``version_marker``), or None."""
        for name in self.names:
            path = shutil.which(name)
            if path and (not self.version_marker or _reports(path, self.version_marker)):
                return path
        return None

    def require(self) -> str:
        """The path of the binary; raises :class:`BinaryNotFound` with an install hint."""
        path = self.find()
        if path is None:
            raise BinaryNotFound(
                f"none of {', '.join(self.names)} is on PATH. Hint: {self.install_hint()}."
            )
        return path


PROMETHEUS = Binary(("prometheus",), "prometheus", "prometheus")
PROMTOOL = Binary(("promtool",), "prometheus", "prometheus")
ALERTMANAGER = Binary(
    ("alertmanager", "prometheus-alertmanager"), "prometheus-alertmanager", "alertmanager"
)
AMTOOL = Binary(("amtool",), "prometheus-alertmanager", "alertmanager")
PUSHGATEWAY = Binary(
    ("pushgateway", "prometheus-pushgateway"), "prometheus-pushgateway", "prometheus-pushgateway"
)
NODE_EXPORTER = Binary(
    ("node_exporter", "prometheus-node-exporter"), "prometheus-node-exporter", "node_exporter"
)
VICTORIA_METRICS = Binary(
    ("victoria-metrics", "victoria-metrics-prod"), "victoria-metrics", "victoriametrics"
)
LOKI = Binary(("loki",), "(none: the embedded Loki is used)", "loki", "loki, version")
TEMPO = Binary(("tempo",), "(none: the embedded Tempo is used)", "tempo", "tempo, version")
PROMTAIL = Binary(
    ("promtail",), "(none: the embedded log shipper is used)", "promtail", "promtail, version"
)
GRAFANA = Binary(
    ("grafana-server", "grafana"), "(none: dashboards are graded without Grafana)", "grafana"
)


@functools.lru_cache(maxsize=32)
def _reports(path: str, marker: str) -> bool:
    try:
        completed = subprocess.run(
            [path, "-version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return marker in completed.stdout + completed.stderr


def find(binary: Binary) -> str | None:
    """The path of ``binary`` on PATH, or None."""
    return binary.find()
