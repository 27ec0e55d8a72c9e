"""``lab images build``: every image the container backend needs, built here, pulled from nowhere.

- the Debian binaries of Prometheus, Alertmanager, Pushgateway, node_exporter and VictoriaMetrics,
  each ``FROM scratch`` with the shared libraries ``ldd`` lists;
- a Debian Python base made with ``debootstrap`` and imported (``localhost/lab/python-base``);
- on it, the embedded Loki, Tempo, log shipper, notification sinks and GPU source.

Each image carries a label with the hash of its inputs; a build whose inputs are unchanged is
skipped.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab_stack import binaries
from lab_stack.binaries import Binary
from lab_stack.engine import podman_env
from lab_stack.errors import BackendError, BinaryNotFound
from lab_stack.settings import PROJECT_ROOT, Settings

__all__ = ["BASE_IMAGE", "BINARY_IMAGES", "EMBEDDED_IMAGE", "BuildResult", "build_all"]

HERE = Path(__file__).resolve().parent
INPUTS_LABEL = "io.workbook.lab.inputs"
BASE_IMAGE = "localhost/lab/python-base:bookworm"
EMBEDDED_IMAGE = "localhost/lab/embedded:latest"
DEBIAN_MIRROR = "http://deb.debian.org/debian"

#: image -> (main binary, extra binaries shipped in the same image)
BINARY_IMAGES: dict[str, tuple[Binary, tuple[Binary, ...]]] = {
    "localhost/lab/prometheus:debian": (binaries.PROMETHEUS, (binaries.PROMTOOL,)),
    "localhost/lab/alertmanager:debian": (binaries.ALERTMANAGER, (binaries.AMTOOL,)),
    "localhost/lab/pushgateway:debian": (binaries.PUSHGATEWAY, ()),
    "localhost/lab/node-exporter:debian": (binaries.NODE_EXPORTER, ()),
    "localhost/lab/victoria-metrics:debian": (binaries.VICTORIA_METRICS, ()),
}
#: Data files a binary reads at run time (Debian's Alertmanager loads its default template).
DATA_FILES: dict[str, tuple[str, ...]] = {
    "localhost/lab/alertmanager:debian": ("/usr/share/prometheus/alertmanager",),
}

_NETWORK_ERRORS = re.compile(
    r"Temporary failure in name resolution|Network is unreachable|Failed to establish a new connection|"
    r"Could not resolve host|Connection refused|Could not fetch URL|No matching distribution found|"
    r"Failed getting release file|Couldn't download|connection timed out",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class BuildResult:
    """One image: built or skipped (inputs unchanged), and how long it took."""

    image: str
    built: bool
    seconds: float


Progress = Callable[[str], None]


def _podman() -> str:
    path = shutil.which("podman")
    if path is None:
        raise BinaryNotFound("podman is not installed. Hint: `make setup` installs it.")
    return path


def _run(argv: list[str], *, what: str, stdin: bytes | None = None, timeout: float = 1800) -> str:
    completed = subprocess.run(
        argv, input=stdin, capture_output=True, env=podman_env(), timeout=timeout, check=False
    )
    output = (completed.stdout + completed.stderr).decode("utf-8", "replace")
    if completed.returncode != 0:
        tail = "\n".join(output.splitlines()[-25:])
        if _NETWORK_ERRORS.search(output):
            raise BackendError(
                f"{what} could not reach the package registries (PyPI / Debian's mirror):\n{tail}\n"
                "Hint: image builds need the network to PyPI and deb.debian.org; check the proxy, or use "
                "the native backend (`LAB_BACKEND=native`), which needs no image."
            )
        raise BackendError(
            f"{what} failed (exit {completed.returncode}):\n{tail}\nHint: read the lines above."
        )
    return output


def _image_inputs(image: str) -> str | None:
    completed = subprocess.run(
        [
            _podman(),
            "image",
            "inspect",
            "--format",
            f'{{{{index .Labels "{INPUTS_LABEL}"}}}}',
            image,
        ],
        capture_output=True,
        text=True,
        env=podman_env(),
        check=False,
    )
    return completed.stdout.strip() if completed.returncode == 0 else None


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def _libraries(path: str) -> list[str]:
    completed = subprocess.run(["ldd", path], capture_output=True, text=True, check=False)
    libs = []
    for line in completed.stdout.splitlines():
        match = re.search(r"(/\S+)\s+\(0x", line)
        if match:
            libs.append(match.group(1))
    return libs


def _build_context(
    context: Path, image: str, inputs: str, dockerfile: str, *, network: str, no_cache: bool = False
) -> None:
    (context / "Dockerfile").write_text(dockerfile)
    _run(
        [
            _podman(),
            "build",
            *(["--no-cache"] if no_cache else []),
            f"--network={network}",
            "--label",
            f"{INPUTS_LABEL}={inputs}",
            "-t",
            image,
            "-f",
            str(context / "Dockerfile"),
            str(context),
        ],
        what=f"building {image}",
    )


def build_binary_image(image: str, *, force: bool = False, network: str = "host") -> BuildResult:
    """Build a ``FROM scratch`` image of a Debian binary with the libraries it links."""
    started = time.monotonic()
    main, extra = BINARY_IMAGES[image]
    paths = [main.require(), *(b.require() for b in extra)]
    files = sorted({*paths, *(lib for p in paths for lib in _libraries(p))})
    for folder in DATA_FILES.get(image, ()):
        files += sorted(str(f) for f in Path(folder).rglob("*") if f.is_file())
    inputs = _digest(*(Path(f).read_bytes() for f in files), *files)
    if not force and _image_inputs(image) == inputs:
        return BuildResult(image, False, time.monotonic() - started)
    with tempfile.TemporaryDirectory(prefix="lab-image-") as tmp:
        context = Path(tmp)
        rootfs = context / "rootfs"
        for file in files:
            target = rootfs / file.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(file).resolve(), target)
        (rootfs / "tmp").mkdir(mode=0o1777)
        (rootfs / "etc").mkdir(exist_ok=True)
        (rootfs / "etc" / "passwd").write_text(
            "root:x:0:0:root:/:/nonexistent\nnobody:x:65534:65534::/:/nonexistent\n"
        )
        dockerfile = f'FROM scratch\nCOPY rootfs/ /\nENTRYPOINT ["{paths[0]}"]\n'
        _build_context(context, image, inputs, dockerfile, network=network)
    return BuildResult(image, True, time.monotonic() - started)


def build_base_image(
    settings: Settings, *, force: bool = False, mirror: str = DEBIAN_MIRROR
) -> BuildResult:
    """Make the Debian Python base with debootstrap and import it (about a minute, once)."""
    started = time.monotonic()
    inputs = _digest("bookworm", "minbase", "python3,python3-venv,ca-certificates", mirror)
    if not force and _image_inputs(BASE_IMAGE) == inputs:
        return BuildResult(BASE_IMAGE, False, time.monotonic() - started)
    debootstrap = shutil.which("debootstrap") or shutil.which("/usr/sbin/debootstrap")
    if debootstrap is None:
        raise BinaryNotFound("debootstrap is not installed. Hint: `make setup` installs it.")
    work = settings.engine_dir / "rootfs-bookworm"
    shutil.rmtree(work, ignore_errors=True)
    work.parent.mkdir(parents=True, exist_ok=True)
    try:
        _run(
            [
                debootstrap,
                "--variant=minbase",
                "--include=python3,python3-venv,ca-certificates",
                "bookworm",
                str(work),
                mirror,
            ],
            what="debootstrap of the Python base",
        )
        tar = subprocess.run(["tar", "-C", str(work), "-c", "."], capture_output=True, check=True)
        _run(
            [_podman(), "import", "--change", f"LABEL {INPUTS_LABEL}={inputs}", "-", BASE_IMAGE],
            what=f"importing {BASE_IMAGE}",
            stdin=tar.stdout,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return BuildResult(BASE_IMAGE, True, time.monotonic() - started)


def _source_files() -> list[Path]:
    files = []
    for package in ("lab_stack", "ml_service"):
        for path in sorted((PROJECT_ROOT / package).rglob("*")):
            if (
                path.is_file()
                and "__pycache__" not in path.parts
                and path.suffix in {".py", ".yml", ".yaml", ".json", ".conf", ".txt", ".proto"}
            ):
                files.append(path)
    return files


def build_embedded_image(
    *, force: bool = False, network: str = "host", no_cache: bool = False
) -> BuildResult:
    """Build the embedded servers' image on the Python base (pip needs PyPI, nothing else)."""
    started = time.monotonic()
    sources = _source_files()
    requirements = (HERE / "embedded-requirements.txt").read_text()
    dockerfile = (HERE / "embedded.Dockerfile").read_text()
    base = _image_inputs(BASE_IMAGE) or ""
    inputs = _digest(
        base,
        requirements,
        dockerfile,
        *(str(p.relative_to(PROJECT_ROOT)) for p in sources),
        *(p.read_bytes() for p in sources),
    )
    if not force and _image_inputs(EMBEDDED_IMAGE) == inputs:
        return BuildResult(EMBEDDED_IMAGE, False, time.monotonic() - started)
    with tempfile.TemporaryDirectory(prefix="lab-image-") as tmp:
        context = Path(tmp)
        shutil.copyfile("/etc/ssl/certs/ca-certificates.crt", context / "ca-certificates.crt")
        (context / "requirements.txt").write_text(requirements)
        for path in sources:
            target = context / "src" / path.relative_to(PROJECT_ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        _build_context(
            context, EMBEDDED_IMAGE, inputs, dockerfile, network=network, no_cache=no_cache
        )
    return BuildResult(EMBEDDED_IMAGE, True, time.monotonic() - started)


def build_all(
    settings: Settings, *, force: bool = False, progress: Progress = lambda line: None
) -> list[BuildResult]:
    """Build every local image the stack needs; skip those whose inputs are unchanged."""
    results = []
    for image in BINARY_IMAGES:
        progress(f"building {image}")
        results.append(build_binary_image(image, force=force))
    progress(f"building {BASE_IMAGE}")
    results.append(build_base_image(settings, force=force))
    progress(f"building {EMBEDDED_IMAGE}")
    results.append(build_embedded_image(force=force))
    if any(r.built for r in results):
        # A rebuilt tag leaves its previous image dangling; remove ours, nobody else's.
        _run(
            [_podman(), "image", "prune", "-f", "--filter", f"label={INPUTS_LABEL}"],
            what="pruning replaced images",
        )
    return results
