"""Beyond one machine: the lab stack on Kubernetes, rendered from the same component specs.

- a per-student stack as the extra containers of a JupyterHub single-user pod (a Zero to
  JupyterHub values file, :mod:`lab_stack.k8s.jupyterhub`);
- class autograding as an Indexed Job, one pod per submission with its own stack as native
  sidecars (:mod:`lab_stack.k8s.grading_job`);
- both read the stack's default configs from one ConfigMap (:mod:`lab_stack.k8s.pod`), and the
  notebook or grading container finds its stack with ``LAB_BACKEND=attach`` (:mod:`lab_stack.attach`).

Validated against the Kubernetes schemas (:mod:`lab_stack.k8s.validate`); not run on a cluster here.

Example:
    >>> from lab_stack.k8s import K8sOptions, render
    >>> files = render(K8sOptions(class_size=120, parallelism=20))
    >>> sorted(files)[0]
    'grading/collect-job.yaml'
"""

from __future__ import annotations

from lab_stack.k8s.grading_job import collect_job, grading_command, grading_job, network_policy
from lab_stack.k8s.jupyterhub import effective_pod, jupyterhub_values
from lab_stack.k8s.options import K8sOptions
from lab_stack.k8s.pod import (
    CONFIG_MAP,
    POD_HOME,
    config_files,
    config_map,
    pod_placement,
    stack_containers,
)
from lab_stack.k8s.render import MIN_KUBERNETES, render, write

__all__ = [
    "CONFIG_MAP",
    "MIN_KUBERNETES",
    "POD_HOME",
    "K8sOptions",
    "collect_job",
    "config_files",
    "config_map",
    "effective_pod",
    "grading_command",
    "grading_job",
    "jupyterhub_values",
    "network_policy",
    "pod_placement",
    "render",
    "stack_containers",
    "write",
]
