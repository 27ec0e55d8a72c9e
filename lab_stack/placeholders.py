"""``${NAME_ADDR}`` / ``${NAME_URL}`` placeholders in students' config files.

Ports differ between machines (a taken port falls back to a free one) and between backends (a
container reaches another by its alias), so a file the student writes names the lab's components
with placeholders, filled in for the component that reads the file:

* ``${PROMETHEUS_ADDR}`` -> ``127.0.0.1:9090``; ``${LOKI_URL}`` -> ``http://127.0.0.1:3100``;
* other ports of a component: ``${SINKS_SMTP_ADDR}``, ``${TEMPO_OTLP_GRPC_ADDR}``;
* ``${SMTP_SMARTHOST}``: the SMTP sink, for Alertmanager's ``smarthost``;
* the student's own services, passed as ``extra`` (``{"ML_SERVICE": url}`` -> ``${ML_SERVICE_ADDR}``).

Placeholders in ``# comments`` are left alone; Prometheus's ``$1`` and Grafana's ``$${__value.raw}``
are not placeholders. An unknown ``${..._ADDR}``/``${..._URL}`` is an error naming the known ones.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from lab_stack.errors import ConfigError

__all__ = ["PATTERN", "fill", "names_for", "split_comment"]

#: What counts as a placeholder of ours.
PATTERN = re.compile(r"\$\{([A-Z][A-Z0-9_]*(?:_ADDR|_URL)|SMTP_SMARTHOST)\}")


def split_comment(line: str) -> tuple[str, str]:
    """A YAML line split into its code and its ``# comment``."""
    quote = ""
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in ("'", '"'):
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index], line[index:]
    return line, ""


def names_for(name: str, url: str) -> dict[str, str]:
    """``NAME_URL`` and ``NAME_ADDR`` of a service ``name`` at ``url`` (``host:port`` accepted)."""
    key = re.sub(r"[^A-Za-z0-9]", "_", name).upper()
    parts = urlsplit(url if "://" in url else f"http://{url}")
    return {f"{key}_URL": f"{parts.scheme}://{parts.netloc}", f"{key}_ADDR": parts.netloc}


def fill(text: str, values: Mapping[str, str], *, source: str = "the file") -> str:
    """``text`` with every placeholder outside comments replaced by ``values[NAME]``.

    Raises:
        ConfigError: ``text`` names a placeholder ``values`` lacks.
    """
    lines = [split_comment(line) for line in text.splitlines(keepends=True)]
    unknown = sorted(
        {m.group(1) for code, _ in lines for m in PATTERN.finditer(code)} - set(values)
    )
    if unknown:
        raise ConfigError(
            f"{source} names {', '.join('${' + u + '}' for u in unknown)}, which the running stack "
            f"does not have; it has {', '.join('${' + k + '}' for k in sorted(values))}. Hint: fix "
            "the name, or pass your service's URL as extra={'ML_SERVICE': url}."
        )
    return "".join(
        PATTERN.sub(lambda m: values[m.group(1)], code) + comment for code, comment in lines
    )
