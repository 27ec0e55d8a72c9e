"""Grade a whole class: ``python -m graders class ASSIGNMENT [--workers N]``.

Every submission in nbgrader's layout (``submitted/<student>/<assignment>/<notebook>``) is graded
in a child process of its own (``python -m graders NN --notebook PATH --json OUT``), N at once.
Each child runs a copy of the notebook in its own kernel and working folder, and its checks see only
the scrape targets, log files and trace ids of that kernel's process tree
(:mod:`graders.context`), so two students' services in one Prometheus are never confused.
Assignments whose notebooks change the stack's global configuration (rules, Alertmanager,
``prometheus.yml``: ``Exercise.shares_stack`` is False) get a stack of their own per worker slot,
started once and reused. A submission that hangs, kills its kernel or floods its output costs
only its own slot: the child ends it (cell time-out, dead kernel, output budget) or, past the
class time-out, the whole process tree is killed.

Results go where nbgrader keeps them and beside:

* nbgrader's gradebook (``gradebook.db`` of the course): one grade cell ``check_<name>`` per check,
  each submission's ``auto_score`` — ``nbgrader export`` then prints the class's grades;
* ``feedback/<student>/<assignment>/<notebook>.html`` (hidden checks: title and points only);
* ``<out>/<assignment>.csv``: student, each check's points, total, max, status;
* ``<out>/<student>/<assignment>/results.json`` in Gradescope's format, ``grade.json`` (the
  verdict with its status) and ``grader.log`` (what the child printed).

``--index I`` grades only the I-th submission (sorted by student) and writes its files under
``--out`` (one pod of a Kubernetes Indexed Job); ``--collect`` then merges them into the outputs.

Example:
    >>> outcomes = grade_class("02", submitted=Path("submitted"), out=Path("autograded"),
    ...                        workers=2)                                    # doctest: +SKIP
    >>> summary = collect("02", out=Path("autograded"), course=Path("."))    # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import psutil
from rich.console import Console, Group
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from graders.errors import GradingError
from graders.feedback import write_feedback
from graders.gradescope import find_notebook, results_json, write_results
from graders.registry import Exercise, exercise
from graders.report import CheckResult, Report, ensure_stack
from lab_stack.errors import LabError
from lab_stack.settings import PROJECT_ROOT, Settings, get_settings

__all__ = [
    "ClassSummary",
    "Outcome",
    "Submission",
    "collect",
    "find_submissions",
    "grade_class",
    "main",
    "unrun_report",
]

#: Seconds a child may take beyond the notebook's own limit: interpreter and kernel start-up,
#: then the checks (the grader's traffic, scrapes).
_CHILD_ALLOWANCE = 180.0
GRADED, FAILED = "graded", "failed"

#: Progress callback: ("started" | "done", the submission, its outcome when done).
Event = Callable[[str, "Submission", "Outcome | None"], None]


@dataclass(frozen=True)
class Submission:
    """One student's submitted assignment folder and the notebook in it (None when missing)."""

    student: str
    folder: Path
    notebook: Path | None
    problem: str | None = None


@dataclass
class Outcome:
    """How one submission's grading went.

    Attributes:
        status: ``graded`` (the notebook ran and its checks were run) or ``failed`` (it could
            not be graded: hung, killed its kernel, flooded, no notebook, ...); ``reason`` says why.
        report: every check's verdict (all zero when ``failed``).
    """

    student: str
    assignment: str
    status: str
    report: Report
    seconds: float = 0.0
    reason: str | None = None
    slot: int = 0
    started_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``grade.json``)."""
        return {
            "student": self.student,
            "assignment": self.assignment,
            "status": self.status,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
            "slot": self.slot,
            "started_at": round(self.started_at, 3),
            "report": self.report.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        """Inverse of :meth:`to_dict`."""
        return cls(
            student=data["student"],
            assignment=data["assignment"],
            status=data["status"],
            report=_report_from_dict(data["report"]),
            seconds=float(data.get("seconds", 0.0)),
            reason=data.get("reason"),
            slot=int(data.get("slot", 0)),
            started_at=float(data.get("started_at", 0.0)),
        )

    def points(self) -> dict[str, float]:
        """``{check: points}``: the verdicts compared across runs."""
        return self.report.points_by_check()


def _report_from_dict(data: dict[str, Any]) -> Report:
    fields = set(CheckResult.__dataclass_fields__)
    return Report(
        exercise=data["exercise"],
        notebook=data["notebook"],
        results=[
            CheckResult(**{k: v for k, v in c.items() if k in fields}) for c in data["checks"]
        ],
        notebook_ok=bool(data.get("notebook_ok", False)),
        reason=data.get("reason"),
        notebook_seconds=float(data.get("notebook_seconds", 0.0)),
        checks_seconds=float(data.get("checks_seconds", 0.0)),
    )


def unrun_report(ex: Exercise, reason: str, *, include_hidden: bool = True) -> Report:
    """A report for a submission that could not be graded: every check 0, ``not graded: reason``."""
    checks = [c for c in ex.checks.values() if include_hidden or not c.hidden]
    return Report(
        ex.number,
        "",
        [
            CheckResult(c.name, c.title, 0.0, c.points, c.hidden, False, f"not graded: {reason}")
            for c in checks
        ],
        notebook_ok=False,
        reason=reason,
    )


# --- finding the submissions ------------------------------------------------------------------
def find_submissions(ex: Exercise, submitted: Path) -> list[Submission]:
    """Every ``submitted/<student>/<assignment>/`` folder of ``ex``, sorted by student.

    Raises:
        GradingError: ``submitted`` is not a folder.
    """
    if not submitted.is_dir():
        raise GradingError(
            f"no submissions folder {submitted}. Hint: collect the class first "
            f"(`nbgrader collect {ex.folder}` or `nbgrader zip_collect {ex.folder}`), or pass "
            "--submitted DIR laid out as <student>/<assignment>/<notebook>."
        )
    found = []
    for student in sorted(p for p in submitted.iterdir() if p.is_dir()):
        folder = student / ex.folder
        if not folder.is_dir():
            continue
        try:
            found.append(Submission(student.name, folder, find_notebook(ex, folder)))
        except GradingError as exc:
            found.append(Submission(student.name, folder, None, str(exc)))
    return found


# --- worker slots -----------------------------------------------------------------------------
class _Slots:
    """N worker slots, each with the settings of the stack it grades against."""

    def __init__(self, settings: Settings, workers: int, *, own: bool, keep: bool) -> None:
        import lab_stack

        self.keep = keep
        self.started: list[Settings] = []
        self.free: queue.Queue[int] = queue.Queue()
        if not own:
            ensure_stack(settings)
            self.settings = [settings] * workers
        else:
            self.settings = []
            for i in range(workers):
                mine = settings.with_(home=settings.home / "class-slots" / f"slot-{i}")
                lab_stack.up(settings=mine, free_ports=True)
                self.started.append(mine)
                self.settings.append(mine)
        for i in range(workers):
            self.free.put(i)

    @contextlib.contextmanager
    def slot(self) -> Iterator[tuple[int, Settings]]:
        index = self.free.get()
        try:
            yield index, self.settings[index]
        finally:
            self.free.put(index)

    def close(self) -> None:
        import lab_stack

        if self.keep:
            return
        for own in self.started:
            with contextlib.suppress(LabError):
                lab_stack.down(settings=own)


# --- grading one submission in a child process ------------------------------------------------
def _child_env(settings: Settings, tmp: Path) -> dict[str, str]:
    from graders.release import venv_env

    env = {k: v for k, v in venv_env().items() if not k.startswith("JPY_")}
    env.update(
        LAB_HOME=str(settings.home),
        LAB_BACKEND=settings.backend,
        TMPDIR=str(tmp),  # the child's copies of the notebook go away with it, even when killed
    )
    return env


def _kill_tree(proc: subprocess.Popen[bytes]) -> set[int]:
    """Kill ``proc``'s whole process tree (the kernel and its services too); return their ports."""
    from graders.context import listening_ports

    ports = listening_ports(proc.pid)
    try:
        tree = [psutil.Process(proc.pid)]
        tree += tree[0].children(recursive=True)
    except psutil.Error:
        tree = []
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for p in tree:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(tree, timeout=5.0)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5.0)
    return ports


def _drop_targets(settings: Settings, ports: set[int]) -> None:
    """Unregister the file_sd targets at ``ports`` (a killed child could not clean up itself)."""
    import lab_stack

    if not ports:
        return
    try:
        stack = lab_stack.connect(settings=settings)
    except LabError:
        return
    for job, groups in stack.targets().items():
        for group in groups:
            for address in group.get("targets", []):
                port = str(address).rsplit(":", 1)[-1]
                if port.isdigit() and int(port) in ports:
                    stack.unregister_target(job, str(address))


def _last_error(log: Path) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no output"
    errors = [ln for ln in lines if ln.startswith("error:")]
    return (errors[-1] if errors else lines[-1] if lines else "no output")[:400]


def _grade_one(
    ex: Exercise,
    sub: Submission,
    *,
    settings: Settings,
    slot: int,
    out: Path,
    public_only: bool,
    timeout: float,
) -> Outcome:
    dest = out / sub.student / ex.folder
    dest.mkdir(parents=True, exist_ok=True)
    report_path, log_path = dest / "report.json", dest / "grader.log"
    report_path.unlink(missing_ok=True)
    started = time.monotonic()
    if sub.notebook is None:
        reason = sub.problem or "no notebook"
        return Outcome(
            sub.student,
            ex.folder,
            FAILED,
            unrun_report(ex, reason, include_hidden=not public_only),
            0.0,
            reason,
            slot,
        )
    cmd = [sys.executable, "-m", "graders", ex.number, "--notebook", str(sub.notebook)]
    cmd += ["--json", str(report_path), *(["--public-only"] if public_only else [])]
    tmp = Path(tempfile.mkdtemp(prefix=f"class-{ex.slug}-"))
    killed = False
    try:
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                cmd,
                cwd=PROJECT_ROOT,
                env=_child_env(settings, tmp),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killed as one
            )
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                killed = True
                _drop_targets(settings, _kill_tree(proc))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.monotonic() - started
    if killed:
        reason = (
            f"grading did not finish within the class time-out of {timeout:.0f} s; the grader "
            "stopped the notebook and everything it started (does a cell loop forever or wait "
            "on something that never comes?)"
        )
    elif report_path.is_file():
        report = _report_from_dict(json.loads(report_path.read_text()))
        stopped = bool(report.results) and all(
            r.message.startswith("not graded:") for r in report.results
        )
        if stopped or not report.results:
            return Outcome(
                sub.student, ex.folder, FAILED, report, seconds, report.reason or "not run", slot
            )
        return Outcome(sub.student, ex.folder, GRADED, report, seconds, None, slot)
    else:
        reason = f"the grader exited with status {proc.returncode}: {_last_error(log_path)}"
    return Outcome(
        sub.student,
        ex.folder,
        FAILED,
        unrun_report(ex, reason, include_hidden=not public_only),
        seconds,
        reason,
        slot,
    )


def _write_outcome(out: Path, outcome: Outcome) -> None:
    dest = out / outcome.student / outcome.assignment
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "grade.json").write_text(json.dumps(outcome.to_dict(), indent=2))
    write_results(
        dest / "results.json",
        results_json(outcome.report, execution_time=outcome.seconds, status=outcome.status),
    )


def grade_class(
    key: str,
    *,
    submitted: Path,
    out: Path,
    workers: int = 1,
    settings: Settings | None = None,
    public_only: bool = False,
    timeout: float | None = None,
    index: int | None = None,
    keep_stacks: bool = False,
    on_event: Event | None = None,
) -> list[Outcome]:
    """Grade every submission of ``key`` under ``submitted``, ``workers`` at once.

    Each outcome is written under ``out/<student>/<assignment>/`` as soon as it is known
    (``grade.json``, ``results.json``, ``grader.log``). Returns the outcomes in student order.

    Args:
        key: the assignment (``02``, ``ex02_metrics``, ``capstone``, ``kc``).
        submitted: nbgrader's ``submitted/`` folder (``<student>/<assignment>/<notebook>``).
        out: where each submission's results go.
        workers: submissions graded at once.
        settings: the lab settings (default: the environment's): the shared stack, or the home
            under which each slot's own stack lives.
        public_only: run only the public checks.
        timeout: seconds one submission may take in all (default: the notebook's limit plus 180).
        index: grade only this submission (0-based, in student order), against ``settings``'s
            stack — one pod of a Kubernetes Indexed Job.
        keep_stacks: leave the slots' own stacks running afterwards.
        on_event: progress callback.

    Raises:
        GradingError: no such assignment or submissions folder, or ``index`` out of range.
    """
    ex = exercise(key)
    settings = settings or get_settings()
    subs = find_submissions(ex, submitted)
    if index is not None:
        if not 0 <= index < len(subs):
            raise GradingError(
                f"--index {index} is out of range: {submitted} holds {len(subs)} submissions of "
                f"{ex.folder}. Hint: indexes run from 0 to {len(subs) - 1} (Indexed Job "
                "completions = the class size)."
            )
        subs, workers = [subs[index]], 1
    limit = timeout if timeout is not None else ex.total_timeout + _CHILD_ALLOWANCE
    workers = max(1, min(workers, len(subs) or 1))
    notify = on_event or (lambda kind, sub, outcome: None)
    # One submission (an Indexed Job's pod) grades against the stack it is given; a class of an
    # assignment that changes global configuration gets a stack per slot.
    slots = _Slots(settings, workers, own=not ex.shares_stack and index is None, keep=keep_stacks)

    def work(sub: Submission) -> Outcome:
        with slots.slot() as (slot, slot_settings):
            notify("started", sub, None)
            began = time.time()
            outcome = _grade_one(
                ex,
                sub,
                settings=slot_settings,
                slot=slot,
                out=out,
                public_only=public_only,
                timeout=limit,
            )
            outcome.started_at = began
        _write_outcome(out, outcome)
        notify("done", sub, outcome)
        return outcome

    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grade") as pool:
            return list(pool.map(work, subs))
    finally:
        slots.close()


# --- collecting: gradebook, feedback, CSV, summary --------------------------------------------
@dataclass
class CheckStats:
    """How the class did on one check (over the submissions that were graded)."""

    name: str
    title: str
    max_points: float
    hidden: bool
    mean: float
    median: float
    full_marks: int
    graded: int


@dataclass
class ClassSummary:
    """The class's outcomes and where their files went."""

    assignment: str
    outcomes: list[Outcome]
    checks: list[CheckStats] = field(default_factory=list)
    csv_path: Path | None = None
    db_url: str | None = None
    feedback: list[Path] = field(default_factory=list)

    @property
    def graded(self) -> list[Outcome]:
        """Outcomes whose notebook ran and were checked."""
        return [o for o in self.outcomes if o.status == GRADED]

    @property
    def failed(self) -> list[Outcome]:
        """Outcomes that could not be graded (with their reasons)."""
        return [o for o in self.outcomes if o.status != GRADED]

    def tables(self) -> Group:
        """Rich tables: the counts, the checks the class struggles with first, the failures."""
        scores = [o.report.score for o in self.graded]
        max_score = max((o.report.max_score for o in self.outcomes), default=0.0)
        head = Table(title=f"Class grading: {self.assignment}", show_header=False)
        head.add_row("submissions", str(len(self.outcomes)))
        head.add_row("graded", str(len(self.graded)))
        head.add_row("failed to run", f"[red]{len(self.failed)}[/]" if self.failed else "0")
        if scores:
            head.add_row(
                "score (graded)",
                f"mean {statistics.fmean(scores):.1f} / median {statistics.median(scores):g}"
                f" of {max_score:g}",
            )
        checks = Table(title="Checks, hardest first (over graded submissions)")
        for col in ("check", "points", "mean", "median", "full marks"):
            checks.add_column(col, justify="left" if col == "check" else "right")
        for c in self.checks:
            checks.add_row(
                c.title + (" [dim](hidden)[/]" if c.hidden else ""),
                f"{c.max_points:g}",
                f"{c.mean:.2f}",
                f"{c.median:g}",
                f"{c.full_marks}/{c.graded}",
            )
        parts: list[Table] = [head, checks]
        if self.failed:
            failed = Table(title="Failed to run")
            failed.add_column("student")
            failed.add_column("reason", overflow="fold")
            for o in self.failed:
                failed.add_row(o.student, o.reason or "")
            parts.append(failed)
        return Group(*parts)


def _check_stats(ex: Exercise, outcomes: list[Outcome]) -> list[CheckStats]:
    graded = [o for o in outcomes if o.status == GRADED]
    stats = []
    for check in ex.checks.values():
        points = [o.points()[check.name] for o in graded if check.name in o.points()]
        if not points:
            continue
        stats.append(
            CheckStats(
                check.name,
                check.title,
                check.points,
                check.hidden,
                statistics.fmean(points),
                statistics.median(points),
                sum(p >= check.points for p in points),
                len(points),
            )
        )
    return sorted(stats, key=lambda s: (s.mean / s.max_points if s.max_points else 1.0, s.name))


def _write_csv(ex: Exercise, outcomes: list[Outcome], path: Path) -> Path:
    names = list(ex.checks)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", *names, "total", "max", "status", "reason"])
        for o in outcomes:
            got = o.points()
            writer.writerow(
                [
                    o.student,
                    *[f"{got[n]:g}" if n in got else "" for n in names],
                    f"{o.report.score:g}",
                    f"{o.report.max_score:g}",
                    o.status,
                    o.reason or "",
                ]
            )
    return path


def _sa_warning() -> type[Warning]:
    from sqlalchemy.exc import SAWarning

    return SAWarning


@contextlib.contextmanager
def _venv_on_path() -> Iterator[None]:
    """The venv's bin/ on PATH: nbgrader's Gradebook runs ``alembic`` from PATH for a new database
    (the venv is not activated when run as ``.venv/bin/python -m graders class``)."""
    bindir, old = str(Path(sys.executable).parent), os.environ.get("PATH", "")
    if bindir in old.split(os.pathsep):
        yield
        return
    os.environ["PATH"] = f"{bindir}{os.pathsep}{old}"
    try:
        yield
    finally:
        os.environ["PATH"] = old


def _write_gradebook(
    ex: Exercise, outcomes: list[Outcome], db_url: str, submitted: Path | None
) -> None:
    from nbgrader.api import Grade, Gradebook, MissingEntry

    notebook = Path(ex.notebook).stem
    with _venv_on_path(), warnings.catch_warnings(), Gradebook(db_url) as gb:
        # nbgrader 0.9's add_submission builds rows the SQLAlchemy 2 way it did not expect and
        # SQLAlchemy says so ("not in session, add operation ... will not proceed"); the rows are
        # added explicitly and nbgrader export reads them back (tests/graders/test_classroom.py).
        warnings.simplefilter("ignore", category=_sa_warning())
        gb.update_or_create_assignment(ex.folder)
        gb.update_or_create_notebook(notebook, ex.folder)
        cells = {
            c.name: gb.update_or_create_grade_cell(
                c.grade_id, notebook, ex.folder, max_score=c.points, cell_type="code"
            )
            for c in ex.checks.values()
        }
        for o in outcomes:
            gb.update_or_create_student(o.student)
            extra: dict[str, Any] = {}
            stamp = submitted / o.student / ex.folder / "timestamp.txt" if submitted else None
            if stamp is not None and stamp.is_file():
                extra["timestamp"] = stamp.read_text().strip()
            gb.update_or_create_submission(ex.folder, o.student, **extra)
            submitted_nb = gb.find_submission_notebook(notebook, ex.folder, o.student)
            got = o.points()
            for name, cell in cells.items():
                try:
                    grade = gb.find_grade(cell.name, notebook, ex.folder, o.student)
                except MissingEntry:  # a grade cell added after this submission was first stored
                    grade = Grade(cell_id=cell.id, notebook=submitted_nb)
                    gb.db.add(grade)
                grade.auto_score = got.get(name, 0.0)
                grade.needs_manual_grade = False
            gb.db.commit()


def load_outcomes(ex: Exercise, out: Path) -> list[Outcome]:
    """Every ``out/<student>/<assignment>/grade.json``, in student order."""
    return [
        Outcome.from_dict(json.loads(p.read_text()))
        for p in sorted(out.glob(f"*/{ex.folder}/grade.json"))
    ]


def collect(
    key: str,
    *,
    out: Path,
    course: Path = PROJECT_ROOT,
    db_url: str | None = None,
    submitted: Path | None = None,
) -> ClassSummary:
    """Merge the per-submission results under ``out`` into the gradebook, feedback and CSV.

    Raises:
        GradingError: ``out`` holds no results of ``key``.
    """
    ex = exercise(key)
    outcomes = load_outcomes(ex, out)
    if not outcomes:
        raise GradingError(
            f"no results of {ex.folder} under {out} (looked for <student>/{ex.folder}/grade.json)."
            " Hint: grade first (python -m graders class ASSIGNMENT, or --index I per submission)."
        )
    db_url = db_url or f"sqlite:///{(course / 'gradebook.db').resolve()}"
    _write_gradebook(ex, outcomes, db_url, submitted)
    summary = ClassSummary(ex.folder, outcomes, _check_stats(ex, outcomes), db_url=db_url)
    summary.csv_path = _write_csv(ex, outcomes, out / f"{ex.folder}.csv")
    for o in outcomes:
        summary.feedback.append(
            write_feedback(
                o.report,
                feedback_dir=course / "feedback",
                student=o.student,
                assignment=ex.folder,
                notebook=ex.notebook,
                status=o.status,
            )
        )
    return summary


# --- the command ------------------------------------------------------------------------------
@click.command()
@click.argument("assignment")
@click.option(
    "--workers",
    "-w",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="submissions graded at once",
)
@click.option(
    "--course",
    type=click.Path(file_okay=False, path_type=Path),
    default=PROJECT_ROOT,
    help="the course folder (nbgrader's root; default: this project)",
)
@click.option(
    "--submitted",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="submissions as <student>/<assignment>/<notebook> (default: COURSE/submitted)",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="per-submission results and the class CSV (default: COURSE/autograded)",
)
@click.option(
    "--db",
    "db_url",
    default=None,
    help="nbgrader's database URL (default: sqlite:///COURSE/gradebook.db)",
)
@click.option(
    "--index",
    type=click.IntRange(min=0),
    default=None,
    help="grade only the I-th submission in student order (a Kubernetes Indexed Job pod)",
)
@click.option(
    "--collect",
    "collect_only",
    is_flag=True,
    help="only merge the results under --out into gradebook, feedback and CSV",
)
@click.option("--public-only", is_flag=True, help="run only the public checks")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=None,
    help="seconds one submission may take in all (default: the notebook's limit + 180)",
)
@click.option(
    "--keep-stacks",
    is_flag=True,
    help="leave the per-slot stacks running (assignments that cannot share a stack)",
)
def main(
    assignment: str,
    workers: int,
    course: Path,
    submitted: Path | None,
    out: Path | None,
    db_url: str | None,
    index: int | None,
    collect_only: bool,
    public_only: bool,
    timeout: float | None,
    keep_stacks: bool,
) -> None:
    """Grade every submission of ASSIGNMENT (02, ex02_metrics, capstone, kc), N at once."""
    console = Console()
    submitted = submitted or course / "submitted"
    out = out or course / "autograded"
    try:
        ex = exercise(assignment)
        if not collect_only:
            total = len(find_submissions(ex, submitted)) if index is None else 1
            with Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[last]}"),
                console=console,
            ) as progress:
                task = progress.add_task(f"grading {ex.folder}", total=total, last="")

                def on_event(kind: str, sub: Submission, outcome: Outcome | None) -> None:
                    if kind == "done" and outcome is not None:
                        mark = "[green]✔[/]" if outcome.status == GRADED else "[red]✘[/]"
                        progress.update(
                            task,
                            advance=1,
                            last=f"{mark} {sub.student} {outcome.report.score:g}/"
                            f"{outcome.report.max_score:g}",
                        )

                outcomes = grade_class(
                    ex.number,
                    submitted=submitted,
                    out=out,
                    workers=workers,
                    public_only=public_only,
                    timeout=timeout,
                    index=index,
                    keep_stacks=keep_stacks,
                    on_event=on_event,
                )
            if index is not None:
                o = outcomes[0]
                console.print(
                    f"{o.student}: {o.status}, {o.report.score:g}/{o.report.max_score:g}"
                    + (f" ({o.reason})" if o.reason else "")
                    + f"; results under {out / o.student / ex.folder}"
                )
                return
        summary = collect(ex.number, out=out, course=course, db_url=db_url, submitted=submitted)
    except (GradingError, LabError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    console.print(summary.tables())
    console.print(
        f"gradebook: {summary.db_url}  (nbgrader export)\n"
        f"class CSV: {summary.csv_path}\n"
        f"feedback:  {course / 'feedback'}/<student>/{ex.folder}/\n"
        f"Gradescope results: {out}/<student>/{ex.folder}/results.json"
    )
