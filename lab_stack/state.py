"""The running stack's record: ``.lab/state.json`` (backend, ports, URLs, PIDs)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab_stack.errors import ConfigError

__all__ = ["ComponentState", "StackState", "load_state", "save_state"]


@dataclass
class ComponentState:
    """What the stack knows about one started component."""

    name: str
    ports: dict[str, int]
    urls: dict[str, str]
    pid: int | None = None
    create_time: float | None = None
    container: str | None = None
    command: list[str] = field(default_factory=list)
    log: str = ""
    #: True once a user applied their own config file, so ``up`` never renders over it.
    custom_config: bool = False


@dataclass
class StackState:
    """The whole stack's record."""

    backend: str
    home: str
    components: dict[str, ComponentState] = field(default_factory=dict)
    network: str | None = None
    stack_id: str = ""

    def urls(self) -> dict[str, str]:
        """Every URL name of every component."""
        merged: dict[str, str] = {}
        for component in self.components.values():
            merged.update(component.urls)
        return merged

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def load_state(path: Path) -> StackState | None:
    """The state at ``path``, or None when there is none; a corrupt file is an error with a hint."""
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
        components = {
            name: ComponentState(**value) for name, value in data.pop("components", {}).items()
        }
        return StackState(components=components, **data)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"the stack's state file {path} is unreadable ({exc}). "
            "Hint: stop any lab processes (`lab down`, or kill them) and delete the file."
        ) from exc


def save_state(path: Path, state: StackState) -> None:
    """Write ``state`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".state-", suffix=".json")
    with os.fdopen(fd, "w") as handle:
        handle.write(state.to_json())
    os.replace(tmp, path)
