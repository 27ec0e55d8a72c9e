"""What ``lab k8s render`` is asked for: one frozen options object, checked once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from lab_stack.components import SPECS, component_names, with_requirements
from lab_stack.errors import ConfigError

__all__ = ["K8sOptions"]

_QUANTITY = re.compile(r"^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True, kw_only=True)
class K8sOptions:
    """Options of the rendered manifests.

    Example:
        >>> K8sOptions(class_size=120, parallelism=20, assignment="05").job_name
        'lab-grade-05'

    Attributes:
        components: the stack's components in each pod (default: every non-optional one, as
            ``lab up`` starts them); ``grafana`` adds Grafana.
        grafana: add Grafana (upstream image) to the stack.
        images: ``upstream`` (the module's pinned images for Prometheus, Alertmanager, Pushgateway,
            node_exporter, VictoriaMetrics, Grafana) or ``local`` (the Debian-binary images of
            ``lab images build``, pushed to ``registry``). The Python components (Loki, Tempo,
            shipper, sinks, GPU source) always run the project's embedded image.
        registry: where the ``localhost/lab/...`` images of ``lab images build`` were pushed
            (``registry.example.edu/course``); empty keeps ``localhost/`` (kind/minikube with the
            images loaded into the nodes).
        image: the course image of the notebook and grading containers: the project installed
            (``pip install .``), with promtool and amtool on PATH.
        namespace: the namespace of the ConfigMap and Jobs (empty: kubectl's current one).
        assignment: what the grading Job grades (``python -m graders class ASSIGNMENT``).
        class_size: submissions to grade: the Job's completions, one index each.
        parallelism: pods grading at once.
        pvc: the PersistentVolumeClaim holding ``submitted/`` (nbgrader's layout) and ``graded/``.
        uid, gid: the user and group every container runs as (JupyterHub's ``jovyan``: 1000/100),
            so the notebook can rewrite the config files the components read.
        grading_cpu, grading_memory: requests of the grading container (the notebook's kernel,
            the student's services and the checks).
        sidecar_cpu, sidecar_memory, sidecar_memory_limit: requests and limit of each component.
        stack_disk: size limit of the pod's shared stack volume (configs, data, logs).
        submission_timeout: seconds one submission's pod may run before it is stopped.
        retries: how often a failed submission's pod is retried (``backoffLimitPerIndex``).
        scrape_interval, evaluation_interval: Prometheus's, as ``LAB_SCRAPE_INTERVAL`` sets them
            for ``lab up`` (the graders' timings assume them).
    """

    components: tuple[str, ...] = ()
    grafana: bool = False
    images: Literal["upstream", "local"] = "upstream"
    registry: str = ""
    image: str = "ml-observability-workbook:0.1.0"
    namespace: str = ""
    assignment: str = "02"
    class_size: int = 30
    parallelism: int = 10
    pvc: str = "course"
    uid: int = 1000
    gid: int = 100
    grading_cpu: str = "1"
    grading_memory: str = "2Gi"
    sidecar_cpu: str = "20m"
    sidecar_memory: str = "64Mi"
    sidecar_memory_limit: str = "512Mi"
    stack_disk: str = "2Gi"
    submission_timeout: int = 900
    retries: int = 1
    scrape_interval: str = "1s"
    evaluation_interval: str = "1s"

    def __post_init__(self) -> None:
        unknown = [n for n in self.components if n not in SPECS]
        if unknown:
            raise ConfigError(
                f"unknown component(s) {', '.join(unknown)}. Hint: known: {', '.join(SPECS)}."
            )
        if self.images not in ("upstream", "local"):
            raise ConfigError(f"images={self.images!r}. Hint: use upstream or local.")
        for name, value in (("class size", self.class_size), ("parallelism", self.parallelism)):
            if value < 1:
                raise ConfigError(f"the {name} is {value}. Hint: give a whole number ≥ 1.")
        if self.submission_timeout < 1 or self.retries < 0:
            raise ConfigError(
                f"submission timeout {self.submission_timeout} s, retries {self.retries}. "
                "Hint: the timeout is ≥ 1 s and retries ≥ 0."
            )
        for name, quantity in (
            ("grading cpu", self.grading_cpu),
            ("grading memory", self.grading_memory),
            ("sidecar cpu", self.sidecar_cpu),
            ("sidecar memory", self.sidecar_memory),
            ("sidecar memory limit", self.sidecar_memory_limit),
            ("stack disk", self.stack_disk),
        ):
            if not _QUANTITY.match(quantity):
                raise ConfigError(
                    f"the {name} {quantity!r} is not a Kubernetes quantity. "
                    "Hint: write e.g. 500m, 2, 256Mi or 2Gi."
                )
        if self.namespace and not _NAME.match(self.namespace):
            raise ConfigError(
                f"namespace {self.namespace!r} is not a DNS label. Hint: lower-case letters, "
                "digits and '-'."
            )
        if self.pvc and not re.match(r"^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$", self.pvc):
            raise ConfigError(
                f"PVC name {self.pvc!r} is not a Kubernetes name. Hint: lower-case letters, digits, '-' and '.'."
            )
        if not self.image.strip():
            raise ConfigError("no course image given. Hint: pass --image REGISTRY/NAME:TAG.")

    @property
    def stack_components(self) -> tuple[str, ...]:
        """The components of each pod's stack, in the catalogue's start order."""
        names = self.components or component_names()
        if self.grafana and "grafana" not in names:
            names = (*names, "grafana")
        return with_requirements(tuple(names))

    @property
    def job_name(self) -> str:
        """The grading Job's name: ``lab-grade-<assignment>`` as a DNS label."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.assignment.lower()).strip("-") or "assignment"
        return f"lab-grade-{slug}"[:52].rstrip("-")
