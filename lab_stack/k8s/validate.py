"""Check rendered manifests against the Kubernetes OpenAPI schemas, offline.

The schemas are those shipped inside the ``kubernetes-validate`` package (a development extra:
``pip install -e '.[dev]'``), in their *strict* form (an unknown or misspelt field is an error).
Each manifest is checked against the oldest Kubernetes the manifests need and the newest the
package knows. A Zero to JupyterHub values file is checked as the Pod KubeSpawner builds from it,
so its ``extraContainers`` and ``initContainers`` are validated as Container objects.
Beyond the schemas, every volume a container mounts must be declared in its pod.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from lab_stack.errors import ConfigError
from lab_stack.k8s.jupyterhub import effective_pod
from lab_stack.k8s.render import MIN_KUBERNETES

__all__ = ["kubernetes_versions", "validate_directory", "validate_document", "validate_files"]


def _library() -> Any:
    try:
        import kubernetes_validate
        import kubernetes_validate.utils
    except ImportError:
        raise ConfigError(
            "validating manifests needs the kubernetes-validate package. "
            "Hint: pip install -e '.[dev]' (or pip install kubernetes-validate)."
        ) from None
    return kubernetes_validate


def kubernetes_versions() -> tuple[str, ...]:
    """The Kubernetes versions every manifest is checked against: the oldest needed, the newest known."""
    newest = _library().utils.latest_version()
    return (MIN_KUBERNETES, ".".join(newest.split(".")[:2]))


def _pod_spec(document: Mapping[str, Any]) -> Mapping[str, Any] | None:
    kind = document.get("kind")
    if kind == "Pod":
        spec: Mapping[str, Any] = document.get("spec", {})
        return spec
    if kind == "Job":
        template: Mapping[str, Any] = document.get("spec", {}).get("template", {})
        job_pod: Mapping[str, Any] = template.get("spec", {})
        return job_pod
    return None


def _check_mounts(document: Mapping[str, Any], source: str) -> None:
    spec = _pod_spec(document)
    if spec is None:
        return
    volumes = {v.get("name") for v in spec.get("volumes", [])}
    for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
        for mount in container.get("volumeMounts", []):
            if mount.get("name") not in volumes:
                raise ConfigError(
                    f"{source}: container {container.get('name')!r} mounts volume "
                    f"{mount.get('name')!r}, which the pod does not declare (it has "
                    f"{', '.join(sorted(map(str, volumes))) or 'none'}). "
                    "Hint: add the volume, or fix the mount's name."
                )


def validate_document(document: Mapping[str, Any], *, source: str = "manifest") -> str:
    """Validate one manifest (or a Zero to JupyterHub values document); return what it was.

    Raises:
        ConfigError: the document breaks a Kubernetes schema (with the field's path and the
            schema's message) or mounts an undeclared volume.
    """
    library = _library()
    if "singleuser" in document and "kind" not in document:
        checked = effective_pod(dict(document))
        what = "jupyterhub values (as the user Pod)"
    elif "kind" in document and "apiVersion" in document:
        checked = dict(document)
        what = f"{checked['kind']}/{checked.get('metadata', {}).get('name', '?')}"
    else:
        raise ConfigError(
            f"{source} is neither a Kubernetes manifest (apiVersion, kind) nor a values file "
            "with a singleuser section. Hint: validate the files `lab k8s render` wrote."
        )
    for version in kubernetes_versions():
        try:
            library.validate(checked, version, strict=True)
        except library.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path) or "(top level)"
            raise ConfigError(
                f"{source}: {what} is not valid for Kubernetes {version}: at {path}: {exc.message}. "
                "Hint: the field's type or name is wrong; see the Kubernetes API reference."
            ) from None
        except library.utils.SchemaNotFoundError as exc:
            raise ConfigError(
                f"{source}: {exc.message}. Hint: check apiVersion and kind."
            ) from None
    _check_mounts(checked, source)
    return what


def validate_files(files: Mapping[str, str]) -> list[str]:
    """Validate every YAML document of ``files`` (name -> text); return what was checked."""
    checked = []
    for name, text in files.items():
        try:
            documents = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError as exc:
            raise ConfigError(f"{name} is not YAML: {exc}. Hint: render it again.") from exc
        if not documents:
            raise ConfigError(f"{name} holds no document. Hint: render it again.")
        for document in documents:
            if not isinstance(document, dict):
                raise ConfigError(f"{name} holds a {type(document).__name__}, not a mapping.")
            checked.append(f"{name}: {validate_document(document, source=name)}")
    return checked


def validate_directory(directory: Path) -> list[str]:
    """Validate every ``*.yaml`` under ``directory`` (what ``lab k8s render`` wrote)."""
    files = {
        str(p.relative_to(directory)): p.read_text() for p in sorted(directory.rglob("*.yaml"))
    }
    if not files:
        raise ConfigError(
            f"no *.yaml under {directory}. Hint: run `lab k8s render --out {directory}` first."
        )
    return validate_files(files)
