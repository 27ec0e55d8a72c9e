"""Generate the student release (notebooks/) from the nbgrader source (solutions/).

``python -m graders.release [FOLDER ...]`` (what ``make notebooks`` runs) calls
``nbgrader generate_assignment`` in a scratch course so no gradebook lands in the repository, runs
the exercise's ``make_starter`` hook on the generated folder (nbgrader only clears notebooks; the
hook blanks solved files shipped next to them), and copies the result into ``notebooks/`` (and
the notebooks of :data:`LECTURE_COPIES` into ``lecture/``). :func:`stale_notebooks` tells whether
``notebooks/`` (or those copies) lag behind ``solutions/``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

from graders.errors import GradingError, UnknownExercise
from graders.registry import exercise
from lab_stack.settings import PROJECT_ROOT

__all__ = ["LECTURE_COPIES", "generate", "source_folders", "stale_notebooks", "venv_env"]

#: Release notebooks also kept under lecture/ (the knowledge check sits with the lecture notes):
#: folder -> notebook, copied to ``lecture/<notebook>`` whenever the folder is generated.
LECTURE_COPIES = {"knowledge_check": "knowledge_check.ipynb"}


def source_folders(root: Path = PROJECT_ROOT) -> list[str]:
    """The exercise folders of solutions/ that hold a notebook."""
    return sorted(
        p.name for p in (root / "solutions").iterdir() if p.is_dir() and any(p.glob("*.ipynb"))
    )


def venv_env() -> dict[str, str]:
    """This environment with the venv's bin/ first on PATH (nbgrader runs ``alembic`` from PATH)."""
    import os

    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _generate_into(root: Path, folders: list[str], scratch: Path) -> Path:
    shutil.copy(root / "nbgrader_config.py", scratch / "nbgrader_config.py")
    shutil.copytree(
        root / "solutions",
        scratch / "solutions",
        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "answers_*.json"),
    )
    for folder in folders:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "nbgrader",
                "generate_assignment",
                folder,
                "--force",
                f"--db=sqlite:///{scratch / 'gradebook.db'}",
            ],
            cwd=scratch,
            capture_output=True,
            text=True,
            check=False,
            env=venv_env(),
        )
        if result.returncode != 0:
            raise GradingError(
                f"nbgrader generate_assignment {folder} failed (exit {result.returncode}):\n"
                f"{result.stdout[-2000:]}{result.stderr[-2000:]}\n"
                "Hint: check the BEGIN/END SOLUTION markers and the nbgrader cell metadata."
            )
        _make_starter(folder, scratch / "notebooks" / folder)
    return scratch / "notebooks"


def _make_starter(folder: str, release: Path) -> None:
    """Run the exercise's ``make_starter`` hook on its generated release folder, if it has one."""
    try:
        hook = exercise(folder).make_starter
    except UnknownExercise:  # a folder without a grader module yet: nbgrader's output as is
        return
    if hook is not None:
        hook(release)


def generate(folders: list[str] | None = None, *, root: Path = PROJECT_ROOT) -> list[Path]:
    """Regenerate ``notebooks/<folder>`` for ``folders`` (default: all); return the folders written."""
    chosen = folders or source_folders(root)
    written = []
    with tempfile.TemporaryDirectory(prefix="release-") as tmp:
        release = _generate_into(root, chosen, Path(tmp))
        for folder in chosen:
            target = root / "notebooks" / folder
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(release / folder, target)
            written.append(target)
            if folder in LECTURE_COPIES:
                copy = root / "lecture" / LECTURE_COPIES[folder]
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(target / LECTURE_COPIES[folder], copy)
                written.append(copy)
    return written


def _cells(path: Path) -> list[tuple[str, str, str]]:
    nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    return [
        (c.cell_type, c.source, repr(sorted(c.get("metadata", {}).get("nbgrader", {}).items())))
        for c in nb.cells
    ]


def stale_notebooks(root: Path = PROJECT_ROOT) -> list[str]:
    """Release notebooks that differ from what ``make notebooks`` would write (empty: up to date)."""
    stale = []
    with tempfile.TemporaryDirectory(prefix="release-check-") as tmp:
        folders = source_folders(root)
        release = _generate_into(root, folders, Path(tmp))
        for folder in folders:
            for fresh in sorted((release / folder).rglob("*")):
                if not fresh.is_file():
                    continue
                rel = fresh.relative_to(release)
                current = root / "notebooks" / rel
                if not current.is_file():
                    stale.append(f"{rel} (missing)")
                elif fresh.suffix == ".ipynb":
                    if _cells(fresh) != _cells(current):
                        stale.append(f"{rel} (cells differ)")
                elif fresh.read_bytes() != current.read_bytes():
                    stale.append(f"{rel} (differs)")
            if folder in LECTURE_COPIES:
                fresh = release / folder / LECTURE_COPIES[folder]
                copy = root / "lecture" / LECTURE_COPIES[folder]
                if not copy.is_file():
                    stale.append(f"lecture/{copy.name} (missing)")
                elif _cells(fresh) != _cells(copy):
                    stale.append(f"lecture/{copy.name} (cells differ)")
    return stale


if __name__ == "__main__":
    for path in generate(sys.argv[1:] or None):
        print(f"wrote {path.relative_to(PROJECT_ROOT)}")  # noqa: T201 - CLI output
