"""A Zero to JupyterHub values file: every student's pod carries its own lab stack.

The components are ``singleuser.extraContainers`` beside the notebook container; an init container
seeds the shared stack volume from the ConfigMap; the notebook container mounts that volume at
``LAB_HOME`` and finds the stack with ``LAB_BACKEND=attach``. Apply the ConfigMap in the hub's
namespace first::

    lab k8s render --out k8s-out --image REGISTRY/ml-observability-workbook:0.1.0
    kubectl apply -n jhub -f k8s-out/lab-stack-config.yaml
    helm upgrade --install jhub jupyterhub/jupyterhub -n jhub -f k8s-out/jupyterhub/values.yaml
"""

from __future__ import annotations

from typing import Any

from lab_stack.k8s.options import K8sOptions
from lab_stack.k8s.pod import (
    POD_HOME,
    STACK_VOLUME,
    seed_container,
    stack_containers,
    stack_env,
    stack_volumes,
)

__all__ = ["NOTEBOOK_CONTAINER", "effective_pod", "jupyterhub_values"]

#: The name KubeSpawner gives the notebook container.
NOTEBOOK_CONTAINER = "notebook"


def _image_parts(image: str) -> tuple[str, str]:
    """``(name, tag)`` of ``image``; a port in the registry host is not a tag."""
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return image, "latest"
    return name, tag


def jupyterhub_values(options: K8sOptions) -> dict[str, Any]:
    """The ``singleuser`` section of a Zero to JupyterHub values file."""
    name, tag = _image_parts(options.image)
    return {
        "singleuser": {
            "image": {"name": name, "tag": tag},
            # Every container of the pod runs as this user, so the notebook may rewrite the
            # config files the components read.
            "uid": options.uid,
            "fsGid": options.gid,
            "extraEnv": {e["name"]: e["value"] for e in stack_env()},
            "initContainers": [seed_container(options)],
            "extraContainers": stack_containers(options),
            "storage": {
                "extraVolumes": stack_volumes(options),
                "extraVolumeMounts": [{"name": STACK_VOLUME, "mountPath": POD_HOME}],
            },
        }
    }


def effective_pod(values: dict[str, Any]) -> dict[str, Any]:
    """The Pod that KubeSpawner builds from ``values`` (the parts they set), for validation."""
    singleuser = values["singleuser"]
    image = singleuser["image"]
    notebook = {
        "name": NOTEBOOK_CONTAINER,
        "image": f"{image['name']}:{image['tag']}",
        "env": [{"name": k, "value": str(v)} for k, v in singleuser["extraEnv"].items()],
        "volumeMounts": singleuser["storage"]["extraVolumeMounts"],
        "securityContext": {"runAsUser": singleuser["uid"]},
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "jupyter-student"},
        "spec": {
            "securityContext": {"fsGroup": singleuser["fsGid"]},
            "initContainers": singleuser["initContainers"],
            "containers": [notebook, *singleuser["extraContainers"]],
            "volumes": singleuser["storage"]["extraVolumes"],
        },
    }
