"""Every manifest of the Kubernetes path, as files: ``lab k8s render --out DIR``.

::

    DIR/lab-stack-config.yaml        ConfigMap: the stack's default configs (both pods read it)
    DIR/jupyterhub/values.yaml       Zero to JupyterHub values: a stack in every student's pod
    DIR/grading/job.yaml             Indexed Job: one pod per submission, a stack in each
    DIR/grading/networkpolicy.yaml   no traffic off the grading pods
    DIR/grading/collect-job.yaml     merges the class's results afterwards

Rendering is deterministic: the same options give byte-identical files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lab_stack.k8s.grading_job import collect_job, grading_job, network_policy
from lab_stack.k8s.jupyterhub import jupyterhub_values
from lab_stack.k8s.options import K8sOptions
from lab_stack.k8s.pod import config_map

__all__ = ["MIN_KUBERNETES", "render", "write"]

#: Native sidecars (init containers with ``restartPolicy: Always``) and ``backoffLimitPerIndex``
#: are on by default from this version.
MIN_KUBERNETES = "1.29"


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (config files, scripts) as literal blocks, readable in the manifest."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _dump(document: dict[str, Any], *, what: str) -> str:
    header = (
        f"# {what}\n"
        "# Rendered by `lab k8s render` from lab_stack/components.py; do not edit, render again.\n"
        f"# Needs Kubernetes >= {MIN_KUBERNETES}. Validated against the Kubernetes schemas "
        "(kubernetes-validate), not run on a cluster.\n"
    )
    return header + yaml.dump(
        document, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100
    )


def render(options: K8sOptions | None = None) -> dict[str, str]:
    """Every manifest (relative path -> YAML text) for ``options``."""
    options = options or K8sOptions()
    job = f"grading Job for assignment {options.assignment}"
    return {
        "lab-stack-config.yaml": _dump(
            config_map(options),
            what="The lab stack's default configs: kubectl apply -n NAMESPACE -f lab-stack-config.yaml",
        ),
        "jupyterhub/values.yaml": _dump(
            jupyterhub_values(options),
            what="Zero to JupyterHub values: helm upgrade --install jhub jupyterhub/jupyterhub "
            "-n NAMESPACE -f jupyterhub/values.yaml",
        ),
        "grading/job.yaml": _dump(
            grading_job(options),
            what=f"The {job}: {options.class_size} submissions, {options.parallelism} at once",
        ),
        "grading/networkpolicy.yaml": _dump(
            network_policy(options), what="Grading pods run students' code: no traffic off the pod"
        ),
        "grading/collect-job.yaml": _dump(
            collect_job(options), what=f"Merges the results of the {job}; apply once it completes"
        ),
    }


def write(directory: Path, options: K8sOptions | None = None) -> list[Path]:
    """Write :func:`render`'s files under ``directory``; return their paths."""
    written = []
    for name, text in render(options).items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
