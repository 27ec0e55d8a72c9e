"""The shipper's positions file, in Promtail's YAML shape plus the files' identities.

``positions`` maps a path to the byte offset (as a string) up to which its lines were pushed, as
Promtail writes it; ``inodes`` maps the same path to ``"<device>:<inode>"`` so that a file renamed
by log rotation while the shipper was down is found again and finished. The file is replaced
atomically (write, fsync, rename), so a crash leaves either the old or the new version.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import structlog
import yaml

from lab_stack.errors import ConfigError

__all__ = ["Position", "read_positions", "write_positions"]

_log = structlog.get_logger("lab_stack.shipper")


@dataclass(frozen=True, slots=True)
class Position:
    """How far one file was shipped."""

    path: str
    offset: int
    device: int | None = None
    inode: int | None = None


def read_positions(path: Path) -> dict[str, Position]:
    """Read a positions file; a missing file means nothing was shipped yet.

    Raises:
        ConfigError: the file exists but is not a positions file.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read positions file {path}: {exc}. Hint: check it.") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"positions file {path} is not valid YAML: {exc}. Hint: delete it to re-ship "
            "every file from the start."
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"positions file {path} is not a mapping. Hint: delete it.")
    offsets = data.get("positions") or {}
    inodes = data.get("inodes") or {}
    out: dict[str, Position] = {}
    for key, raw in offsets.items():
        try:
            offset = int(raw)
        except (TypeError, ValueError):
            _log.warning("ignoring bad position", file=str(path), path=key, value=raw)
            continue
        dev: int | None = None
        ino: int | None = None
        ident = inodes.get(key)
        if isinstance(ident, str) and ident.count(":") == 1:
            a, b = ident.split(":")
            if a.isdigit() and b.isdigit():
                dev, ino = int(a), int(b)
        out[str(key)] = Position(path=str(key), offset=offset, device=dev, inode=ino)
    return out


def write_positions(path: Path, positions: list[Position]) -> None:
    """Atomically replace the positions file with ``positions``."""
    data: dict[str, dict[str, str]] = {"positions": {}, "inodes": {}}
    for pos in positions:
        data["positions"][pos.path] = str(pos.offset)
        if pos.device is not None and pos.inode is not None:
            data["inodes"][pos.path] = f"{pos.device}:{pos.inode}"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        yaml.safe_dump(data, fh, default_flow_style=False, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
