"""``lab``: the command line of the lab stack (a thin click layer over :mod:`lab_stack`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from lab_stack import doctor as doctor_module
from lab_stack.errors import LabError
from lab_stack.native import HOST_MODULE
from lab_stack.readiness import tail
from lab_stack.settings import Settings
from lab_stack.stack import connect, down, up

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])

console = Console()
err_console = Console(stderr=True)


def _settings(ctx: click.Context, backend: str | None = None) -> Settings:
    settings: Settings = ctx.obj["settings"]
    if backend:
        settings = settings.with_(backend=backend)
    return settings


def _fail(exc: LabError) -> None:
    err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
    for note in getattr(exc, "__notes__", []):
        err_console.print(note, highlight=False, markup=False)
    sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More detail (-vv for debug logs).")
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """Run the course's observability stack on 127.0.0.1."""
    ctx.ensure_object(dict)
    try:
        ctx.obj["settings"] = Settings.from_env()
    except LabError as exc:
        _fail(exc)
    ctx.obj["verbose"] = verbose


@main.command("up")
@click.option(
    "--backend",
    type=click.Choice(["auto", "native", "docker", "attach"]),
    default=None,
    help="Override LAB_BACKEND.",
)
@click.option(
    "--only", multiple=True, metavar="NAME", help="Start only these components (repeatable)."
)
@click.pass_context
def up_command(ctx: click.Context, backend: str | None, only: tuple[str, ...]) -> None:
    """Start what is down, restart what died, wait until everything is ready."""
    settings = _settings(ctx, backend)
    with console.status("starting the lab stack...") as status:

        def on_event(name: str, what: str, seconds: float | None) -> None:
            if what == "ready":
                console.print(f"  [green]✓[/] {name:<16} ready in {seconds:.2f} s")
            elif what == "running":
                console.print(f"  [green]✓[/] {name:<16} already running")
            else:
                status.update(f"starting {name}...")

        try:
            stack = up(settings=settings, components=only or None, on_event=on_event)
        except LabError as exc:
            _fail(exc)
    console.print(
        f"[bold green]lab stack ready[/] ({stack.state.backend}); `lab urls` lists the URLs."
    )


@main.command("down")
@click.pass_context
def down_command(ctx: click.Context) -> None:
    """Stop every component of the stack."""
    try:
        stopped = down(settings=_settings(ctx))
    except LabError as exc:
        _fail(exc)
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@main.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status_command(ctx: click.Context, as_json: bool) -> None:
    """Show each component, its state and URL (exit 1 when something is not ready)."""
    try:
        stack = connect(settings=_settings(ctx))
        rows = stack.status()
    except LabError as exc:
        if as_json:
            click.echo(json.dumps({"running": False, "error": str(exc), "components": []}))
            sys.exit(1)
        _fail(exc)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "running": True,
                    "backend": stack.state.backend,
                    "components": [
                        {
                            "name": r.name,
                            "state": r.state,
                            "url": r.url,
                            "pid": r.pid,
                            "ports": r.ports,
                        }
                        for r in rows
                    ],
                    "urls": stack.urls(),
                },
                indent=2,
            )
        )
    else:
        table = Table(title=f"lab stack ({stack.state.backend}) in {stack.settings.home}")
        for column in ("component", "state", "url", "pid"):
            table.add_column(column)
        colours = {"ready": "green", "running": "yellow", "stopped": "red"}
        hosted = {
            name for name, record in stack.state.components.items() if HOST_MODULE in record.command
        }
        for r in rows:
            pid = str(r.pid or "")
            if r.name in hosted and pid:
                pid += " (shared host)"  # the embedded servers share one Python process
            table.add_row(r.name, f"[{colours[r.state]}]{r.state}[/]", r.url, pid)
        console.print(table)
    sys.exit(0 if all(r.state == "ready" for r in rows) else 1)


@main.command("urls")
@click.pass_context
def urls_command(ctx: click.Context) -> None:
    """Print NAME=URL for every URL of the running stack."""
    try:
        stack = connect(settings=_settings(ctx))
    except LabError as exc:
        _fail(exc)
    for name, url in stack.urls().items():
        click.echo(f"{name}={url}")


@main.command("logs")
@click.argument("name")
@click.option("-n", "--lines", default=40, show_default=True, help="How many lines.")
@click.pass_context
def logs_command(ctx: click.Context, name: str, lines: int) -> None:
    """Print the last lines of component NAME's log."""
    settings = _settings(ctx)
    path = settings.logs_dir / f"{name}.log"
    if not path.exists():
        known = sorted(p.stem for p in settings.logs_dir.glob("*.log"))
        _fail(
            LabError(
                f"no log for {name!r} in {settings.logs_dir}. Hint: known logs: {', '.join(known) or 'none'}."
            )
        )
    click.echo(tail(path, lines))


@main.command("doctor")
@click.pass_context
def doctor_command(ctx: click.Context) -> None:
    """Diagnose common problems: missing binaries, taken ports, targets down, rejected configs."""
    findings = doctor_module.diagnose(settings=_settings(ctx))
    table = Table(title="lab doctor")
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail / what to do")
    marks = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]"}
    for f in findings:
        table.add_row(f.check, marks[f.level], f.detail)
    console.print(table)
    sys.exit(1 if any(f.level == "fail" for f in findings) else 0)


@main.command("apply")
@click.argument("kind", type=click.Choice(["prometheus", "rules", "alertmanager"]))
@click.argument(
    "paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.pass_context
def apply_command(ctx: click.Context, kind: str, paths: tuple[Path, ...]) -> None:
    """Check a config (promtool/amtool) and apply it to the running stack."""
    try:
        stack = connect(settings=_settings(ctx))
        if kind == "prometheus":
            stack.apply_prometheus_config(paths[0])
        elif kind == "alertmanager":
            stack.apply_alertmanager_config(paths[0])
        else:
            stack.apply_rules(list(paths))
    except LabError as exc:
        _fail(exc)
    console.print(f"[green]applied[/] {', '.join(map(str, paths))}")


@main.group("engine")
def engine_group() -> None:
    """Podman's Docker-compatible API for the docker backend where Docker is absent."""


@engine_group.command("up")
@click.pass_context
def engine_up(ctx: click.Context) -> None:
    """Start podman's API service on a socket under LAB_ENGINE_DIR."""
    from lab_stack.engine import Engine

    try:
        host = Engine(_settings(ctx)).up()
    except LabError as exc:
        _fail(exc)
    console.print(
        f"podman's Docker API answers at [bold]{host}[/]; `lab up --backend docker` uses it."
    )


@engine_group.command("down")
@click.pass_context
def engine_down(ctx: click.Context) -> None:
    """Stop podman's API service."""
    from lab_stack.engine import Engine

    stopped = Engine(_settings(ctx)).down()
    console.print(
        "stopped podman's API service" if stopped else "podman's API service was not running"
    )


@main.group("images")
def images_group() -> None:
    """The container images of the docker backend (LAB_IMAGES=local)."""


@images_group.command("build")
@click.option("--force", is_flag=True, help="Rebuild even when the inputs are unchanged.")
@click.pass_context
def images_build(ctx: click.Context, force: bool) -> None:
    """Build every local image (Debian binaries FROM scratch, debootstrap base, embedded servers)."""
    from lab_stack.images import build_all

    try:
        with console.status("building images...") as status:
            results = build_all(_settings(ctx), force=force, progress=status.update)
    except LabError as exc:
        _fail(exc)
    for r in results:
        console.print(f"  {'built  ' if r.built else 'cached '} {r.image}  ({r.seconds:.1f} s)")


@main.group("k8s")
def k8s_group() -> None:
    """Kubernetes manifests rendered from the stack's specs (JupyterHub pods, grading Jobs)."""


@k8s_group.command("render")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the manifests to.",
)
@click.option(
    "--class-size", default=30, show_default=True, help="Submissions to grade (Job completions)."
)
@click.option("--parallelism", default=10, show_default=True, help="Grading pods at once.")
@click.option("--assignment", default="02", show_default=True, help="What the grading Job grades.")
@click.option(
    "--image",
    default="ml-observability-workbook:0.1.0",
    show_default=True,
    help="Course image of the notebook and grading containers (the project installed, promtool/amtool).",
)
@click.option(
    "--images",
    type=click.Choice(["upstream", "local"]),
    default="upstream",
    show_default=True,
    help="Component images: the pinned upstream ones, or those of `lab images build`.",
)
@click.option("--registry", default="", help="Where the localhost/lab/... images were pushed.")
@click.option("--namespace", default="", help="Namespace of the ConfigMap and Jobs.")
@click.option("--pvc", default="course", show_default=True, help="PVC with submitted/ and graded/.")
@click.option("--grafana", is_flag=True, help="Add Grafana to each pod's stack.")
def k8s_render(
    out: Path,
    class_size: int,
    parallelism: int,
    assignment: str,
    image: str,
    images: str,
    registry: str,
    namespace: str,
    pvc: str,
    grafana: bool,
) -> None:
    """Write the ConfigMap, the JupyterHub values file and the grading Jobs under OUT."""
    from lab_stack.k8s import K8sOptions, write

    try:
        options = K8sOptions(
            class_size=class_size,
            parallelism=parallelism,
            assignment=assignment,
            image=image,
            images=images,  # type: ignore[arg-type]
            registry=registry,
            namespace=namespace,
            pvc=pvc,
            grafana=grafana,
        )
        written = write(out, options)
    except LabError as exc:
        _fail(exc)
    for path in written:
        console.print(f"  wrote {path}")
    console.print(
        "validate with `lab k8s validate "
        f"{out}`; not run on a cluster here (see the README's Kubernetes section)."
    )


@k8s_group.command("validate")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
def k8s_validate(directory: Path) -> None:
    """Check every manifest under DIRECTORY against the Kubernetes schemas (offline)."""
    from lab_stack.k8s.validate import kubernetes_versions, validate_directory

    try:
        checked = validate_directory(directory)
        versions = kubernetes_versions()
    except LabError as exc:
        _fail(exc)
    for line in checked:
        console.print(f"  [green]valid[/] {line}")
    console.print(f"valid against Kubernetes {' and '.join(versions)} (strict schemas)")


if __name__ == "__main__":  # pragma: no cover
    main()
