"""Kubernetes manifests: rendered from the component specs, deterministic, valid against the schemas."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from lab_stack import k8s
from lab_stack.cli import main
from lab_stack.components import SPECS, component_names, prometheus_config, render_yaml
from lab_stack.docker_backend import EMBEDDED_PYTHON, alias
from lab_stack.errors import ConfigError
from lab_stack.k8s import K8sOptions
from lab_stack.k8s.validate import kubernetes_versions, validate_document, validate_files
from lab_stack.native import NativePlacement
from lab_stack.settings import Settings


def _docs(files: dict[str, str]) -> dict[str, Any]:
    return {name: yaml.safe_load(text) for name, text in files.items()}


def _job_pod(options: K8sOptions) -> dict[str, Any]:
    pod: dict[str, Any] = k8s.grading_job(options)["spec"]["template"]["spec"]
    return pod


def _default_ports() -> dict[str, dict[str, int]]:
    return {n: {p.name: p.default for p in spec.ports} for n, spec in SPECS.items()}


def test_public_names_are_pinned() -> None:
    """The package's public API is its __all__ list."""
    assert sorted(k8s.__all__) == sorted(
        [
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
    )


def test_rendering_is_deterministic(tmp_path: Path) -> None:
    """The same options give byte-identical files, in memory and on disk."""
    options = K8sOptions(class_size=42, parallelism=7, grafana=True)
    assert k8s.render(options) == k8s.render(options)
    first = {p.name: p.read_bytes() for p in k8s.write(tmp_path / "a", options)}
    second = {p.name: p.read_bytes() for p in k8s.write(tmp_path / "b", options)}
    assert first == second
    assert sorted(
        p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*.yaml")
    ) == [
        "grading/collect-job.yaml",
        "grading/job.yaml",
        "grading/networkpolicy.yaml",
        "jupyterhub/values.yaml",
        "lab-stack-config.yaml",
    ]


@pytest.mark.parametrize("grafana", [False, True])
def test_every_component_of_the_spec_is_a_container_in_both_pods(grafana: bool) -> None:
    """The JupyterHub pod's extraContainers and the Job's sidecars are the spec's components."""
    options = K8sOptions(grafana=grafana)
    expected = [alias(n) for n in component_names()] + (["grafana"] if grafana else [])
    values = k8s.jupyterhub_values(options)["singleuser"]
    assert [c["name"] for c in values["extraContainers"]] == expected
    init = _job_pod(options)["initContainers"]
    assert [c["name"] for c in init] == ["lab-stack-seed", *expected]
    assert {c.get("restartPolicy") for c in init[1:]} == {"Always"}  # native sidecars
    assert "restartPolicy" not in init[0]  # the seed runs once, before them


def test_container_args_are_the_native_processes_args_under_the_pod_home() -> None:
    """Each container runs its spec's command with the arguments a native process gets when
    LAB_HOME is the pod's shared folder and every port is the spec's default on 127.0.0.1."""
    options = K8sOptions(grafana=True)
    native = NativePlacement(Settings(home=Path(k8s.POD_HOME)), _default_ports())
    containers = {c["name"]: c for c in k8s.stack_containers(options)}
    for name in options.stack_components:
        spec, container = SPECS[name], containers[alias(name)]
        if name == "grafana":  # configured by environment, as in the docker backend
            env = {e["name"]: e["value"] for e in container["env"]}
            assert env["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"
            assert env["GF_SERVER_HTTP_PORT"] == str(spec.main_port.default)
            continue
        assert container["args"] == spec.command(native), name
        if spec.module:
            assert container["command"] == [EMBEDDED_PYTHON, "-m", spec.module]
            assert container["image"].endswith("/lab/embedded:latest")
        else:
            assert container["image"] == spec.image
        # Where it listens: its arguments, or its config file (the shipper's).
        configs = [t for p, t in k8s.config_files(options).items() if p.startswith(f"{name}/")]
        listen = " ".join([*container["args"], *configs])
        assert "0.0.0.0" not in listen
        assert "127.0.0.1" in listen
        assert str(spec.main_port.default) in listen
        assert container["volumeMounts"] == [{"name": "lab-stack", "mountPath": k8s.POD_HOME}]


def test_default_configs_are_what_the_native_backend_renders_under_the_pod_home() -> None:
    """The ConfigMap's files equal the native backend's defaults for LAB_HOME=/srv/lab, so the
    notebook side (attach, native placement) and the containers agree on every path and port."""
    options = K8sOptions()
    names = options.stack_components
    settings = Settings(home=Path(k8s.POD_HOME))
    native = NativePlacement(settings, {n: _default_ports()[n] for n in names})
    expected = {}
    for name in names:
        files = dict(SPECS[name].configs(native))
        if name == "prometheus":
            files["prometheus.yml"] = render_yaml(
                prometheus_config(
                    native,
                    components=names,
                    scrape_interval=settings.scrape_interval,
                    evaluation_interval=settings.evaluation_interval,
                )
            )
        expected.update({f"{name}/{f}": text for f, text in files.items()})
    assert k8s.config_files(options) == expected
    document = k8s.config_map(options)
    assert all(re.fullmatch(r"[-._a-zA-Z0-9]+", key) for key in document["data"])
    assert sorted(document["data"].values()) == sorted(expected.values())
    prometheus = yaml.safe_load(expected["prometheus/prometheus.yml"])
    assert prometheus["scrape_configs"][-1]["file_sd_configs"][0]["files"] == [
        "/srv/lab/config/prometheus/file_sd/*.json"
    ]


def test_seed_copies_every_config_and_creates_the_folders_the_stack_writes() -> None:
    """The init container makes the data, rules, file_sd and service-log folders and copies the
    ConfigMap (mounted with one item per file) into the shared volume."""
    options = K8sOptions()
    pod = _job_pod(options)
    script = pod["initContainers"][0]["command"][-1]
    for folder in (
        "data/prometheus",
        "config/prometheus/file_sd",
        "config/prometheus/rules",
        "logs/services",
    ):
        assert f"mkdir -p {k8s.POD_HOME}/{folder}\n" in script
    assert script.endswith(f"cp -RL /srv/lab-seed/* {k8s.POD_HOME}/config/")
    seed = next(v for v in pod["volumes"] if "configMap" in v)
    assert seed["configMap"]["name"] == k8s.CONFIG_MAP
    assert [i["path"] for i in seed["configMap"]["items"]] == list(k8s.config_files(options))


def test_job_follows_the_options_and_runs_the_class_entry_point() -> None:
    """completions = class size, parallelism as asked, Indexed, and the grading command."""
    options = K8sOptions(class_size=137, parallelism=12, assignment="capstone", pvc="course-2026")
    job = k8s.grading_job(options)
    assert job["metadata"]["name"] == "lab-grade-capstone"
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == 137
    assert job["spec"]["parallelism"] == 12
    (grader,) = job["spec"]["template"]["spec"]["containers"]
    assert grader["command"] == [
        "python",
        "-m",
        "graders",
        "class",
        "capstone",
        "--submitted",
        "/course/submitted",
        "--index",
        "$(JOB_COMPLETION_INDEX)",
        "--out",
        "/course/graded",
    ]
    env = {e["name"]: e.get("value") for e in grader["env"]}
    assert env["LAB_BACKEND"] == "attach" and env["LAB_HOME"] == k8s.POD_HOME
    assert "JOB_COMPLETION_INDEX" in env
    claim = next(
        v for v in job["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v
    )
    assert claim["persistentVolumeClaim"]["claimName"] == "course-2026"
    collect = k8s.collect_job(options)["spec"]["template"]["spec"]["containers"][0]
    assert collect["command"][-4:] == ["capstone", "--collect", "--out", "/course/graded"]


def test_cli_renders_what_the_options_say(tmp_path: Path) -> None:
    """`lab k8s render` writes the files; the Job carries --class-size and --parallelism."""
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        [
            "k8s",
            "render",
            "--out",
            str(out),
            "--class-size",
            "1000",
            "--parallelism",
            "50",
            "--assignment",
            "05",
            "--image",
            "registry.example.edu:5000/workbook:2026.1",
            "--registry",
            "registry.example.edu:5000/course",
        ],
    )
    assert result.exit_code == 0, result.output
    job = yaml.safe_load((out / "grading/job.yaml").read_text())
    assert (job["spec"]["completions"], job["spec"]["parallelism"]) == (1000, 50)
    assert (
        job["spec"]["template"]["spec"]["containers"][0]["image"]
        == "registry.example.edu:5000/workbook:2026.1"
    )
    values = yaml.safe_load((out / "jupyterhub/values.yaml").read_text())
    assert values["singleuser"]["image"] == {
        "name": "registry.example.edu:5000/workbook",
        "tag": "2026.1",
    }
    images = {c["name"]: c["image"] for c in values["singleuser"]["extraContainers"]}
    assert images["loki"] == "registry.example.edu:5000/course/lab/embedded:latest"
    assert images["prometheus"] == SPECS["prometheus"].image
    valid = CliRunner().invoke(main, ["k8s", "validate", str(out)])
    assert valid.exit_code == 0, valid.output
    assert "valid against Kubernetes" in valid.output


def test_bad_options_are_refused_with_a_hint() -> None:
    """A class of zero, a non-quantity or an unknown component is a ConfigError with a hint."""
    with pytest.raises(ConfigError, match=r"parallelism is 0.*Hint"):
        K8sOptions(parallelism=0)
    with pytest.raises(ConfigError, match=r"not a Kubernetes quantity.*Hint"):
        K8sOptions(grading_memory="2 GB")
    with pytest.raises(ConfigError, match=r"unknown component.*Hint"):
        K8sOptions(components=("jaeger",))


def test_every_rendered_manifest_is_valid_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every manifest validates against the strict schemas of the oldest and newest Kubernetes,
    with the network cut off (the schemas ship inside kubernetes-validate)."""

    def no_network(*args: object, **kwargs: object) -> None:
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    checked = validate_files(
        k8s.render(K8sOptions(grafana=True, images="local", namespace="course"))
    )
    assert [line.split(": ", 1)[1] for line in checked] == [
        "ConfigMap/lab-stack-config",
        "jupyterhub values (as the user Pod)",
        "Job/lab-grade-02",
        "NetworkPolicy/lab-grade-02-isolated",
        "Job/lab-grade-02-collect",
    ]
    assert kubernetes_versions()[0] == k8s.MIN_KUBERNETES


def test_values_file_parses_and_its_containers_are_container_objects() -> None:
    """The values file is YAML whose extraContainers and initContainers each validate, on their
    own, as a Kubernetes Container (wrapped in a minimal Pod)."""
    values = _docs(k8s.render(K8sOptions()))["jupyterhub/values.yaml"]
    singleuser = values["singleuser"]
    assert singleuser["extraEnv"]["LAB_BACKEND"] == "attach"
    assert singleuser["storage"]["extraVolumeMounts"] == [
        {"name": "lab-stack", "mountPath": k8s.POD_HOME}
    ]
    for container in [*singleuser["initContainers"], *singleuser["extraContainers"]]:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "c"},
            "spec": {"containers": [container]},
        }
        for version in kubernetes_versions():
            kubernetes_validate.validate(pod, version, strict=True)


@pytest.mark.parametrize(
    ("where", "change", "message"),
    [
        (
            "job",
            lambda d: d["spec"].update(completions="ten"),
            r"spec\.completions: 'ten' is not of type",
        ),
        (
            "job",
            lambda d: d["spec"]["template"]["spec"]["containers"][0].update(
                restartPolicyy="Always"
            ),
            "restartPolicyy",
        ),
        (
            "job",
            lambda d: d["spec"]["template"]["spec"]["containers"][0]["volumeMounts"].append(
                {"name": "nowhere", "mountPath": "/x"}
            ),
            "mounts volume 'nowhere', which the pod does not declare",
        ),
        (
            "values",
            lambda d: d["singleuser"]["extraContainers"][0].update(args="--web.enable-lifecycle"),
            "is not of type 'array'",
        ),
    ],
)
def test_an_invalid_manifest_is_rejected(where: str, change: Any, message: str) -> None:
    """A wrong type, a misspelt field or a dangling volume mount fails validation with a hint."""
    document = (
        k8s.grading_job(K8sOptions()) if where == "job" else k8s.jupyterhub_values(K8sOptions())
    )
    change(document)
    with pytest.raises(ConfigError, match=f"{message}.*Hint"):
        validate_document(document)


def test_cli_validate_fails_on_a_broken_manifest(tmp_path: Path) -> None:
    """`lab k8s validate` exits 1 with the field's path when a file was edited wrongly."""
    k8s.write(tmp_path, K8sOptions())
    job = tmp_path / "grading" / "job.yaml"
    job.write_text(job.read_text().replace("parallelism: 10", "parallelism: lots"))
    result = CliRunner().invoke(main, ["k8s", "validate", str(tmp_path)])
    assert result.exit_code == 1
    assert "spec.parallelism" in result.output and "Hint" in result.output
