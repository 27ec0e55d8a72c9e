"""The attach backend: use components that already run, start none (``LAB_BACKEND=attach``).

In a Kubernetes pod the stack's components are containers of the pod (a JupyterHub single-user
pod's ``extraContainers``, a grading Job's sidecars; see :mod:`lab_stack.k8s`). They share the
pod's loopback and a volume mounted at ``LAB_HOME`` in every container, so to the notebook they
look exactly like the native backend's processes: the same 127.0.0.1 ports, the same config
folders under ``LAB_HOME``. What the notebook side lacks is the state file; ``attach`` waits until
every component answers its readiness URL and writes that file, with no PIDs. From then on
``lab status``, the clients and the graders work unchanged; config changes are written into the
shared folders and applied through each component's HTTP reload, as for native processes.

``lab down`` forgets an attached stack and stops nothing: its components belong to the pod.

Example:
    >>> from lab_stack.attach import attach_up
    >>> stack = attach_up(settings=settings)          # doctest: +SKIP
    >>> stack.prometheus.query_value("up")            # doctest: +SKIP
    1.0
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from lab_stack.components import SPECS, component_names, with_requirements
from lab_stack.errors import ConfigError, LabError
from lab_stack.readiness import ReadyCheck, wait_ready
from lab_stack.settings import HOST, Settings
from lab_stack.state import ComponentState, StackState, load_state, save_state

if TYPE_CHECKING:
    from lab_stack.stack import Event, Stack

__all__ = ["AttachRunner", "attach_up", "default_ports"]

_HINT = (
    "nothing answers there. In a Kubernetes pod NAME is the container of that name: "
    "`kubectl logs POD -c NAME` (its config came from the lab-stack ConfigMap). Outside a pod, "
    "start the stack instead: unset LAB_BACKEND or use `lab up --backend native`"
)


def default_ports(name: str) -> dict[str, int]:
    """The ports ``name`` listens on in a pod: its spec's defaults."""
    return {port.name: port.default for port in SPECS[name].ports}


def _answers(port: int, *, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


class AttachRunner:
    """Liveness of attached components: their main port accepts a connection. Stops nothing."""

    name = "attach"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def is_alive(self, record: ComponentState) -> bool:
        """True when the component's main port accepts a TCP connection on 127.0.0.1."""
        main = SPECS[record.name].main_port.name
        port = record.ports.get(main)
        return port is not None and _answers(port)

    def death_reason(self, record: ComponentState) -> str | None:
        """None while the component answers, else a short reason."""
        if self.is_alive(record):
            return None
        return f"nothing listens on {HOST}:{record.ports.get(SPECS[record.name].main_port.name)}"

    def stop(self, record: ComponentState, *, timeout: float = 5.0) -> None:
        """Nothing to do: an attached component belongs to whoever started it (the pod)."""


def _names(
    components: Sequence[str] | None, ports: Mapping[str, Mapping[str, int]]
) -> tuple[str, ...]:
    if components:
        unknown = [n for n in components if n not in SPECS]
        if unknown:
            raise ConfigError(
                f"unknown component(s) {', '.join(unknown)}; known: {', '.join(SPECS)}."
            )
        return with_requirements(tuple(components))
    names = list(component_names())
    # Optional components (Grafana) are part of the stack when they answer.
    for name, spec in SPECS.items():
        if spec.optional:
            port = ports.get(name, default_ports(name)).get(spec.main_port.name)
            if port is not None and _answers(port):
                names.append(name)
    return tuple(names)


def attach_up(
    *,
    settings: Settings,
    components: Sequence[str] | None = None,
    ports: Mapping[str, Mapping[str, int]] | None = None,
    on_event: Event | None = None,
) -> Stack:
    """Wait until the running components answer, record them in the state file, return the stack.

    Args:
        settings: where the state file goes (``LAB_HOME``, the folder shared with the components)
            and how long to wait for them (``LAB_STARTUP_TIMEOUT``).
        components: the components to expect (default: every non-optional one, and optional ones
            that answer).
        ports: the ports of components that do not listen on their defaults (default: the ports
            recorded by an earlier attach, else each spec's defaults, as in a pod).
        on_event: progress callback ``(component, "starting"|"ready", seconds)``.

    Raises:
        StartupError: a component did not answer in time (the message says where it was looked for).
        LabError: a stack of another backend is recorded under ``settings.home``.
    """
    from lab_stack.stack import Stack, _locked, _urls

    given = dict(ports or {})
    with _locked(settings.home):
        state = load_state(settings.state_file) or StackState(
            backend="attach", home=str(settings.home)
        )
        if state.backend != "attach":
            raise LabError(
                f"a {state.backend} stack is recorded in {settings.state_file}. "
                "Hint: run `lab down` first, or use the same backend."
            )
        recorded = {n: c.ports for n, c in state.components.items()}
        names = _names(components, {**recorded, **given})
        checks = []
        for name in names:
            spec = SPECS[name]
            chosen = dict(given.get(name) or recorded.get(name) or default_ports(name))
            missing = [p.name for p in spec.ports if p.name not in chosen]
            if missing:
                raise ConfigError(
                    f"no port given for {name}'s {', '.join(missing)}. "
                    f"Hint: pass every port of {name}: {', '.join(p.name for p in spec.ports)}."
                )
            state.components[name] = ComponentState(
                name=name, ports=chosen, urls=_urls(spec, chosen)
            )
            if on_event is not None:
                on_event(name, "starting", None)
            checks.append(
                ReadyCheck(
                    name=name,
                    url=f"http://{HOST}:{chosen[spec.main_port.name]}{spec.ready_path}",
                    hint=_HINT,
                )
            )
        for name in [n for n in state.components if n not in names]:
            del state.components[name]
        wait_ready(
            checks,
            timeout=settings.startup_timeout,
            on_ready=(lambda n, s: on_event(n, "ready", s)) if on_event else (lambda n, s: None),
        )
        save_state(settings.state_file, state)
        return Stack(settings, state)
