"""Class autograding as a Kubernetes Indexed Job: one index per submission, a stack per pod.

Each pod runs the same entry point, ``python -m graders class ASSIGNMENT --submitted
/course/submitted --index $(JOB_COMPLETION_INDEX) --out /course/graded``, which grades the
index-th submission in sorted student order; ``--collect`` merges the results afterwards (the
collect Job).

The stack runs as **native sidecars** (init containers with ``restartPolicy: Always``, Kubernetes
≥ 1.29): the same containers as in the JupyterHub pod, each with its own image, requests and
restarts; they start before the grading container and are stopped when it exits, so the Job
completes. (Putting the whole stack inside the grading container would need one image with every
binary and a second way to run the stack; it would also hide a crashed component from the
kubelet.) The grading container attaches to them (``LAB_BACKEND=attach``), waiting until each
answers: probes cannot, since every component listens on the pod's loopback only.

The student's notebook runs in these pods, so they get no service-account token and a
NetworkPolicy that denies all traffic off the pod (loopback is not affected).
"""

from __future__ import annotations

from typing import Any

from lab_stack.k8s.options import K8sOptions
from lab_stack.k8s.pod import (
    LABELS,
    POD_HOME,
    STACK_VOLUME,
    seed_container,
    stack_containers,
    stack_env,
    stack_volumes,
)

__all__ = ["COURSE_ROOT", "collect_job", "grading_command", "grading_job", "network_policy"]

COURSE_ROOT = "/course"
COURSE_VOLUME = "course"
GRADER_CONTAINER = "grader"


def grading_command(options: K8sOptions, *, index: str = "$(JOB_COMPLETION_INDEX)") -> list[str]:
    """The argv of one grading pod (``$(VAR)`` is expanded by the kubelet)."""
    return [
        "python",
        "-m",
        "graders",
        "class",
        options.assignment,
        "--submitted",
        f"{COURSE_ROOT}/submitted",
        "--index",
        index,
        "--out",
        f"{COURSE_ROOT}/graded",
    ]


def _metadata(name: str, options: K8sOptions) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if options.namespace:
        metadata["namespace"] = options.namespace
    metadata["labels"] = _labels(options)
    return metadata


def _labels(options: K8sOptions) -> dict[str, str]:
    return {
        **LABELS,
        "app.kubernetes.io/component": "grading",
        "app.kubernetes.io/instance": options.job_name,
    }


def _pod_security(options: K8sOptions) -> dict[str, Any]:
    return {
        "runAsUser": options.uid,
        "runAsGroup": options.gid,
        "fsGroup": options.gid,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _grader(
    options: K8sOptions, command: list[str], mounts: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "name": GRADER_CONTAINER,
        "image": options.image,
        "command": command,
        "env": [
            *stack_env(),
            # Set by the Job controller too; named here so $(JOB_COMPLETION_INDEX) is explicit.
            {
                "name": "JOB_COMPLETION_INDEX",
                "valueFrom": {
                    "fieldRef": {
                        "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"
                    }
                },
            },
        ],
        "volumeMounts": mounts,
        "resources": {
            "requests": {"cpu": options.grading_cpu, "memory": options.grading_memory},
            "limits": {"memory": options.grading_memory},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def grading_job(options: K8sOptions) -> dict[str, Any]:
    """The Indexed Job grading ``options.class_size`` submissions, ``options.parallelism`` at once."""
    sidecars = [{**c, "restartPolicy": "Always"} for c in stack_containers(options)]
    mounts: list[dict[str, Any]] = [
        {"name": STACK_VOLUME, "mountPath": POD_HOME},
        {
            "name": COURSE_VOLUME,
            "mountPath": f"{COURSE_ROOT}/submitted",
            "subPath": "submitted",
            "readOnly": True,
        },
        {"name": COURSE_VOLUME, "mountPath": f"{COURSE_ROOT}/graded", "subPath": "graded"},
    ]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(options.job_name, options),
        "spec": {
            "completionMode": "Indexed",
            "completions": options.class_size,
            "parallelism": options.parallelism,
            # A submission that crashes or hangs costs its own retries, not the class's.
            "backoffLimitPerIndex": options.retries,
            "template": {
                "metadata": {"labels": _labels(options)},
                "spec": {
                    "restartPolicy": "Never",
                    "activeDeadlineSeconds": options.submission_timeout,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": _pod_security(options),
                    "initContainers": [seed_container(options), *sidecars],
                    "containers": [_grader(options, grading_command(options), mounts)],
                    "volumes": [
                        *stack_volumes(options),
                        {
                            "name": COURSE_VOLUME,
                            "persistentVolumeClaim": {"claimName": options.pvc},
                        },
                    ],
                },
            },
        },
    }


def collect_job(options: K8sOptions) -> dict[str, Any]:
    """The Job that merges every index's results (run after the grading Job completes)."""
    command = [
        "python",
        "-m",
        "graders",
        "class",
        options.assignment,
        "--collect",
        "--out",
        f"{COURSE_ROOT}/graded",
    ]
    container = _grader(options, command, [{"name": COURSE_VOLUME, "mountPath": COURSE_ROOT}])
    del container["env"]  # merging results needs no stack and no index
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(f"{options.job_name}-collect", options),
        "spec": {
            "completions": 1,
            "backoffLimit": options.retries,
            "template": {
                "metadata": {"labels": _labels(options)},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": _pod_security(options),
                    "containers": [container],
                    "volumes": [
                        {
                            "name": COURSE_VOLUME,
                            "persistentVolumeClaim": {"claimName": options.pvc},
                        }
                    ],
                },
            },
        },
    }


def network_policy(options: K8sOptions) -> dict[str, Any]:
    """Deny the grading pods every connection off the pod (students' code runs there)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(f"{options.job_name}-isolated", options),
        "spec": {
            "podSelector": {"matchLabels": _labels(options)},
            "policyTypes": ["Ingress", "Egress"],
        },
    }
