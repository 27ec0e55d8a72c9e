"""Class grading throughput: 12 generated submissions of exercise 02 graded with 1, 2 and 4 workers.

The class mixes solutions, starters and mutants (plausible wrong answers). Each worker count
grades the same class against one stack (02 shares a stack); the table shows wall time and
submissions per minute, and the script fails (exit 1) when any submission's verdict, check by
check, differs between worker counts. The last line is ``ratio: X.XX``, the speed-up at 4 workers
over 1.

Run: ``.venv/bin/python benchmarks/class_grading.py [--all-checks] [--workers 1,2,4]``
(starts a stack in a temporary home, stops it). Public checks only by default: the hidden ones
add the same traffic-bound work to every worker count.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import lab_stack
from graders import exercise
from graders.classroom import GRADED, grade_class
from graders.mutants import write_mutant
from lab_stack.settings import PROJECT_ROOT, Settings

KEY = "02"
#: 12 submissions: 4 solutions, 3 starters, 5 mutants (each failing a public check).
MUTANTS = (
    "error_ratio_wrong_denominator",
    "buckets_without_slo",
    "summary_not_histogram",
    "dashboard_missing_metric",
    "quantiles_averaged",
)


def make_class(submitted: Path, scratch: Path) -> list[str]:
    """Write the 12 submissions under ``submitted``; return their kinds in student order."""
    ex = exercise(KEY)
    ignore = shutil.ignore_patterns("answers_*.json", ".ipynb_checkpoints", "__pycache__")
    sources: list[tuple[str, Path]] = []
    sources += [("solution", ex.solution_dir(PROJECT_ROOT))] * 4
    sources += [("starter", ex.release_dir(PROJECT_ROOT))] * 3
    for name in MUTANTS:
        mutant = next(m for m in ex.mutants if m.name == name)
        sources.append((f"mutant:{name}", write_mutant(ex, mutant, scratch).parent))
    kinds = []
    # interleave the kinds so every worker count sees the same mix at any moment
    order = [0, 4, 7, 1, 8, 5, 2, 9, 10, 6, 3, 11]
    for i, index in enumerate(order):
        kind, folder = sources[index]
        shutil.copytree(folder, submitted / f"student{i:02d}" / ex.folder, ignore=ignore)
        kinds.append(kind)
    return kinds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all-checks", action="store_true", help="grade hidden checks too")
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma separated")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-class-") as tmp:
        root = Path(tmp)
        settings = Settings.from_env().with_(home=root / "lab", backend="native")
        kinds = make_class(root / "submitted", root / "mutants")
        lab_stack.up(settings=settings, free_ports=True)
        rows = []
        verdicts: dict[int, dict[str, dict[str, float]]] = {}
        try:
            for workers in counts:
                started = time.monotonic()
                outcomes = grade_class(
                    KEY,
                    submitted=root / "submitted",
                    out=root / f"out-{workers}",
                    workers=workers,
                    settings=settings,
                    public_only=not args.all_checks,
                )
                wall = time.monotonic() - started
                verdicts[workers] = {o.student: o.points() for o in outcomes}
                graded = sum(o.status == GRADED for o in outcomes)
                rows.append((workers, wall, len(outcomes) / wall * 60, graded, len(outcomes)))
                print(f"  {workers} worker(s): {wall:.1f} s", file=sys.stderr, flush=True)
        finally:
            lab_stack.down(settings=settings)
    base = rows[0][1]
    print(f"class: {len(kinds)} submissions of ex{KEY} ({', '.join(sorted(set(kinds)))})")
    print(f"{'workers':>7} {'wall s':>8} {'subs/min':>9} {'speed-up':>9} {'graded':>7}")
    for workers, wall, per_min, graded, total in rows:
        print(f"{workers:>7} {wall:8.1f} {per_min:9.2f} {base / wall:9.2f} {graded:>4}/{total}")
    first = verdicts[counts[0]]
    differ = [
        (w, student, kinds[int(student.removeprefix("student"))], first[student], got)
        for w, by_student in verdicts.items()
        for student, got in by_student.items()
        if got != first[student]
    ]
    for workers, student, kind, want, got in differ:
        changed = {k: (want.get(k), got.get(k)) for k in want.keys() | got.keys()}
        changed = {k: v for k, v in changed.items() if v[0] != v[1]}
        print(f"VERDICT DIFFERS: {student} ({kind}) with {workers} workers: {changed}")
    four = next((wall for w, wall, *_ in rows if w == 4), rows[-1][1])
    print("verdicts identical across worker counts" if not differ else "verdicts differ")
    print(f"ratio: {base / four:.2f}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
