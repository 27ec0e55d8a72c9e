"""The lab stack inside one pod, rendered from the component specs.

Containers of a pod share one network namespace, so a pod is the docker backend with every
component "on the host network": each listens on 127.0.0.1 at its default port and reaches its
peers there (:class:`~lab_stack.docker_backend.DockerPlacement` with every component in
``host_network``). The commands are :func:`~lab_stack.docker_backend.container_plan`'s, so they are
the specs' own arguments, as for the native and docker backends.

One ``emptyDir`` volume is mounted at :data:`POD_HOME` in every container, and the notebook (or
grading) container sets ``LAB_HOME`` to it. The components' config folders, data and the ML
services' log files are then at the paths the native backend uses under ``LAB_HOME``: the
notebook's ``Stack`` writes file_sd targets, rules and Alertmanager configs there and reloads the
component over HTTP, exactly as for local processes (``LAB_BACKEND=attach``, :mod:`lab_stack.attach`).

The default configs are rendered into a ConfigMap; a first init container copies them into the
shared volume (ConfigMap mounts are read-only; the notebook must be able to change them) and
creates the data folders.

The Python components (Loki, Tempo, the log shipper, the sinks, the GPU source) run the project's
embedded servers, never the real Loki/Tempo/Promtail images: those open further gRPC and
memberlist ports on every interface with clashing defaults (Tempo and Promtail both take 9095),
which one shared network namespace cannot hold, and the embedded servers are what the tests here
run.
"""

from __future__ import annotations

from typing import Any

from lab_stack.components import SPECS, prometheus_config, render_yaml
from lab_stack.docker_backend import ContainerPlan, DockerPlacement, alias, container_plan
from lab_stack.images import EMBEDDED_IMAGE
from lab_stack.k8s.options import K8sOptions

__all__ = [
    "CONFIG_MAP",
    "POD_HOME",
    "STACK_VOLUME",
    "config_files",
    "config_map",
    "pod_placement",
    "seed_container",
    "stack_containers",
    "stack_env",
    "stack_volumes",
]

#: Where the shared stack volume is mounted in every container of the pod (``LAB_HOME``).
POD_HOME = "/srv/lab"
STACK_VOLUME = "lab-stack"
SEED_VOLUME = "lab-stack-seed"
SEED_PATH = "/srv/lab-seed"
CONFIG_MAP = "lab-stack-config"
LABELS = {"app.kubernetes.io/part-of": "ml-observability-workbook"}


def pod_placement(names: tuple[str, ...]) -> DockerPlacement:
    """Placement of a pod: every component on the pod's loopback at its default ports."""
    return DockerPlacement(
        {n: {p.name: p.default for p in SPECS[n].ports} for n in names},
        config_root=f"{POD_HOME}/config",
        data_root=f"{POD_HOME}/data",
        logs_dir=f"{POD_HOME}/logs/services",
        host_network=frozenset(names),
    )


def _image(image: str, options: K8sOptions) -> str:
    if options.registry and image.startswith("localhost/"):
        return f"{options.registry.rstrip('/')}/{image.removeprefix('localhost/')}"
    return image


def _plan(name: str, options: K8sOptions) -> ContainerPlan:
    spec = SPECS[name]
    placement = pod_placement(options.stack_components)
    # The embedded servers for the Python components (module docstring), the chosen images else.
    plan = container_plan(spec, placement, images="local" if spec.module else options.images)
    if not plan.image:
        raise ValueError(f"{name} has no image for images={options.images}")
    return plan


def config_files(options: K8sOptions) -> dict[str, str]:
    """Every default config file of the pod's stack: ``component/file`` -> text."""
    names = options.stack_components
    placement = pod_placement(names)
    files: dict[str, str] = {}
    for name in names:
        spec = SPECS[name]
        view = placement.view_from(name)
        own = dict(spec.configs(view))
        if name == "prometheus":
            own["prometheus.yml"] = render_yaml(
                prometheus_config(
                    view,
                    components=names,
                    scrape_interval=options.scrape_interval,
                    evaluation_interval=options.evaluation_interval,
                )
            )
        own.update(_plan(name, options).configs)
        for filename, text in own.items():
            files[f"{name}/{filename}"] = text
    return dict(sorted(files.items()))


def _key(path: str) -> str:
    """A ConfigMap key for ``path`` (keys may not hold '/')."""
    return path.replace("/", "__")


def _metadata(name: str, options: K8sOptions, component: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if options.namespace:
        metadata["namespace"] = options.namespace
    metadata["labels"] = {**LABELS, "app.kubernetes.io/component": component}
    return metadata


def config_map(options: K8sOptions) -> dict[str, Any]:
    """The ConfigMap holding the stack's default config files."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(CONFIG_MAP, options, "lab-stack"),
        "data": {_key(path): text for path, text in config_files(options).items()},
    }


def stack_volumes(options: K8sOptions) -> list[dict[str, Any]]:
    """The pod's volumes for the stack: the shared folder and the ConfigMap of defaults."""
    return [
        {"name": STACK_VOLUME, "emptyDir": {"sizeLimit": options.stack_disk}},
        {
            "name": SEED_VOLUME,
            "configMap": {
                "name": CONFIG_MAP,
                "items": [{"key": _key(p), "path": p} for p in config_files(options)],
            },
        },
    ]


def stack_env() -> list[dict[str, str]]:
    """Environment of the notebook or grading container: find the pod's stack, start none."""
    return [
        {"name": "LAB_HOME", "value": POD_HOME},
        {"name": "LAB_BACKEND", "value": "attach"},
        # The components start beside the notebook; give them time on a busy node.
        {"name": "LAB_STARTUP_TIMEOUT", "value": "120"},
    ]


def _security(options: K8sOptions) -> dict[str, Any]:
    return {
        "runAsUser": options.uid,
        "runAsGroup": options.gid,
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }


def _mount() -> dict[str, str]:
    return {"name": STACK_VOLUME, "mountPath": POD_HOME}


def seed_container(options: K8sOptions) -> dict[str, Any]:
    """The init container that copies the default configs into the shared volume."""
    names = options.stack_components
    placement = pod_placement(names)
    folders = sorted(
        {
            *(placement.data_dir(n) for n in names),
            *(placement.config_dir(n) for n in names),
            f"{placement.config_dir('prometheus')}/rules",
            f"{placement.config_dir('prometheus')}/file_sd",
            placement.service_logs_dir(),
        }
    )
    script = "\n".join(
        ["set -e", *(f"mkdir -p {f}" for f in folders), f"cp -RL {SEED_PATH}/* {POD_HOME}/config/"]
    )
    return {
        "name": "lab-stack-seed",
        "image": _image(EMBEDDED_IMAGE, options),
        "command": ["/bin/sh", "-c", script],
        "volumeMounts": [_mount(), {"name": SEED_VOLUME, "mountPath": SEED_PATH, "readOnly": True}],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
        "securityContext": _security(options),
    }


def stack_containers(options: K8sOptions) -> list[dict[str, Any]]:
    """One container per component of the stack, in start order."""
    placement = pod_placement(options.stack_components)
    containers = []
    for name in options.stack_components:
        plan = _plan(name, options)
        env = dict(plan.environment)
        if name == "grafana":
            # The image's own folders belong to its user; ours is the pod's.
            env["GF_PATHS_DATA"] = placement.data_dir(name)
            env["GF_PATHS_LOGS"] = f"{placement.data_dir(name)}/log"
            env["GF_PATHS_PLUGINS"] = f"{placement.data_dir(name)}/plugins"
        container: dict[str, Any] = {"name": alias(name), "image": _image(plan.image, options)}
        if plan.entrypoint is not None:
            container["command"] = list(plan.entrypoint)
        if plan.command:
            container["args"] = list(plan.command)
        if env:
            container["env"] = [{"name": k, "value": v} for k, v in env.items()]
        container["workingDir"] = placement.data_dir(name)
        container["volumeMounts"] = [_mount()]
        container["resources"] = {
            "requests": {"cpu": options.sidecar_cpu, "memory": options.sidecar_memory},
            "limits": {"memory": options.sidecar_memory_limit},
        }
        container["securityContext"] = _security(options)
        containers.append(container)
    return containers
