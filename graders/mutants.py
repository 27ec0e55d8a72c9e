"""Build a mutant submission: a copy of the solution folder with the mutant's replacements applied.

Example:
    >>> ex = exercise("02")                                              # doctest: +SKIP
    >>> path = write_mutant(ex, ex.mutants[0], tmp_path)                 # doctest: +SKIP
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat

from graders.errors import GradingError
from graders.registry import Exercise, Mutant
from lab_stack.settings import PROJECT_ROOT

__all__ = ["apply_mutant", "write_mutant"]


def apply_mutant(nb: nbformat.NotebookNode, mutant: Mutant) -> nbformat.NotebookNode:
    """Apply ``mutant``'s replacements to the code cells of ``nb`` (in place); return ``nb``."""
    for old, new in mutant.replace:
        hits = [c for c in nb.cells if c.cell_type == "code" and old in c.source]
        count = sum(c.source.count(old) for c in hits)
        if count != 1:
            raise GradingError(
                f"mutant {mutant.name}: {old!r} occurs {count} times in the solution's code cells, "
                "not once. Hint: make the text to replace longer (unique), or update the mutant "
                "after editing the solution."
            )
        hits[0].source = hits[0].source.replace(old, new)
    return nb


def write_mutant(ex: Exercise, mutant: Mutant, dest: Path, *, root: Path = PROJECT_ROOT) -> Path:
    """Copy the solution folder of ``ex`` to ``dest/<mutant>/<folder>``, mutate; return the notebook."""
    folder = dest / mutant.name / ex.folder
    shutil.copytree(
        ex.solution_dir(root),
        folder,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "answers_*.json"),
    )
    path = folder / ex.notebook
    nb = apply_mutant(nbformat.read(path, as_version=4), mutant)  # type: ignore[no-untyped-call]
    nbformat.write(nb, path)  # type: ignore[no-untyped-call]
    return path
