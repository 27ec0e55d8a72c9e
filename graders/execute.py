"""Run a copy of a submitted notebook in a fresh kernel and keep that kernel alive for the checks.

The student's file is only read: its folder is copied to a temporary directory, the copy runs
there in a new ``workbook`` kernel (nbclient, a per-cell and a total timeout, an output budget),
and the kernel — with the services it started — stays up while the checks query the backends.
On leaving the context the kernel and every process it started are stopped, and the scrape
targets the run's kernel registered are taken out again (only those: other submissions may be
graded against the same stack at the same time).

Example:
    >>> with run_notebook(path, settings=settings) as run:        # doctest: +SKIP
    ...     run.ok, run.reason
    (True, None)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import psutil
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from lab_stack.settings import Settings

__all__ = ["KERNEL_NAME", "Execution", "is_check_cell", "prepare_copy", "run_notebook"]

#: The Jupyter kernel every notebook of the course runs in (registered in the venv by `make setup`).
KERNEL_NAME = "workbook"

#: Progress callback: (cell index, number of cells, seconds so far).
CellEvent = Callable[[int, int, float], None]

_IGNORE = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "answers_*.json")


def is_check_cell(cell: Any) -> bool:
    """True for a cell that runs checks (autograder cells, the public check cell)."""
    if cell.get("cell_type") != "code":
        return False
    meta = cell.get("metadata", {}).get("nbgrader", {})
    if meta.get("grade") and not meta.get("solution"):
        return True
    source = str(cell.get("source", ""))
    return "graders.check(" in source or "graders.nbcheck(" in source


def prepare_copy(notebook: Path, dest: Path, *, strip_checks: bool = True) -> Path:
    """Copy ``notebook``'s folder to ``dest``; empty the check cells of the copy; return its path."""
    shutil.copytree(notebook.parent, dest, ignore=_IGNORE, dirs_exist_ok=True)
    copy = dest / notebook.name
    nb = nbformat.read(notebook, as_version=4)  # type: ignore[no-untyped-call]
    if strip_checks:
        for cell in nb.cells:
            if is_check_cell(cell):
                cell.source = "# (checks run by the grader, outside the notebook)"
    nbformat.write(nb, copy)  # type: ignore[no-untyped-call]
    return copy


@dataclass
class Execution:
    """How the run of a notebook copy went; the kernel is alive while the context is open."""

    notebook: Path
    workdir: Path
    ok: bool = False
    reason: str | None = None
    failed_cell: int | None = None
    seconds: float = 0.0
    kernel_pid: int = 0
    finished_at: float = 0.0
    cells: int = 0
    stopped: bool = False
    executed: Any = field(default=None, repr=False)


class _GradingClient(NotebookClient):  # type: ignore[misc]
    """nbclient with an output budget: past it, outputs are dropped, the cell is interrupted and
    the run is marked flooded."""

    def __init__(self, nb: Any, *, max_output_bytes: int, **kw: Any) -> None:
        super().__init__(nb, **kw)
        self.max_output_bytes = max_output_bytes
        self.output_bytes = 0
        self.flooded = False

    def output(
        self, outs: list[Any], msg: dict[str, Any], display_id: str | None, cell_index: int
    ) -> Any:
        self.output_bytes += len(json.dumps(msg.get("content", {}), default=str))
        if self.output_bytes > self.max_output_bytes:
            if not self.flooded:
                self.flooded = True
                self._interrupt()
            return None
        return super().output(outs, msg, display_id, cell_index)

    def _interrupt(self) -> None:
        # A flooding cell is interrupted at once (KeyboardInterrupt in the kernel) rather than
        # left printing until its time-out: in a class run the slot is free again in seconds.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        km = self.km
        if km is None:
            return
        pending = km.interrupt_kernel()  # a coroutine: the kernel manager is asynchronous
        if asyncio.iscoroutine(pending):
            self._interrupting = loop.create_task(pending)


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, CellExecutionError):
        ename = getattr(exc, "ename", "") or "error"
        evalue = (getattr(exc, "evalue", "") or "").strip().splitlines()
        return f"{ename}: {evalue[0][:300]}" if evalue else ename
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"


def _stop_tree(pid: int, km: AsyncKernelManager, client: _GradingClient) -> None:
    try:
        survivors = psutil.Process(pid).children(recursive=True) if pid else []
    except psutil.Error:
        survivors = []
    with contextlib.suppress(Exception):
        client._cleanup_kernel()
    with contextlib.suppress(Exception):
        if km.has_kernel:
            from jupyter_core.utils import run_sync

            run_sync(km.shutdown_kernel)(now=True)
    for proc in survivors:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(survivors, timeout=3.0)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()


class _TargetLedger:
    """The scrape targets one run added, so that only those are taken out when it ends.

    Several submissions may be graded at once against one stack, so a run must never put the
    file_sd files back as a whole (that would drop the targets of a kernel still being graded).
    Instead the ports listened on by the run's kernel tree are sampled after every cell (a kernel
    that dies mid-run still has its earlier services on record), and at the end the file_sd
    entries at those ports are removed; entries that were there before the run, that the run took
    out and that something still serves are put back. Entries added while the run went that no
    process serves any more are removed too (a kernel that died in the cell that started them).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.before = self._entries(self._stack())
        self.ports: set[int] = set()

    def _stack(self) -> Any:
        """The stack under the settings' home, or None when none runs there."""
        import lab_stack
        from lab_stack.errors import LabError

        try:
            return lab_stack.connect(settings=self.settings)
        except LabError:
            return None

    @staticmethod
    def _entries(stack: Any) -> dict[tuple[str, str], dict[str, str]]:
        """``{(job, address): labels}`` of every registered target (none without a stack)."""
        found: dict[tuple[str, str], dict[str, str]] = {}
        for job, groups in (stack.targets() if stack is not None else {}).items():
            for group in groups:
                for address in group.get("targets", []):
                    found[(job, str(address))] = dict(group.get("labels") or {})
        return found

    def sample(self, pid: int) -> None:
        """Remember the ports ``pid``'s process tree listens on now."""
        if pid:
            from graders.context import listening_ports

            self.ports |= listening_ports(pid)

    def settle(self) -> None:
        """Remove the run's entries; put back earlier ones it removed that are still served."""
        from lab_stack.errors import LabError

        stack = self._stack()
        if stack is None:
            return
        now = self._entries(stack)
        listening = _listening_anywhere()
        for job, address in now:
            port = _port(address)
            # ours, or added while this run went and served by nothing any more (a kernel that
            # died in the cell that started its service)
            if port in self.ports or ((job, address) not in self.before and port not in listening):
                stack.unregister_target(job, address)
        for (job, address), labels in self.before.items():
            port = _port(address)
            if (job, address) in now or port in self.ports or port not in listening:
                continue
            scheme = labels.get("__scheme__", "http")
            path = labels.get("__metrics_path__", "/metrics")
            kept = {k: v for k, v in labels.items() if not k.startswith("__") and k != "job"}
            with contextlib.suppress(LabError):
                stack.register_target(job, f"{scheme}://{address}{path}", labels=kept or None)


def _port(address: str) -> int | None:
    try:
        return int(address.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return None


def _listening_anywhere() -> set[int]:
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return set()
    return {c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN and c.laddr}


@contextlib.contextmanager
def run_notebook(
    notebook: Path,
    *,
    settings: Settings,
    cell_timeout: float = 120.0,
    total_timeout: float = 300.0,
    strip_checks: bool = True,
    max_output_bytes: int = 2_000_000,
    kernel_name: str = KERNEL_NAME,
    on_cell: CellEvent | None = None,
) -> Iterator[Execution]:
    """Execute a copy of ``notebook`` (with its folder) and yield the :class:`Execution`.

    The kernel stays alive inside the ``with`` block. Failures of the notebook do not raise:
    they end the run with ``ok=False`` and a one-line ``reason``. After an exception (or
    ``sys.exit``) the next cells still run, as under nbgrader, so points match; a timeout, a dead
    kernel or an output flood stop the run there.
    """
    notebook = Path(notebook).resolve()
    ledger = _TargetLedger(settings)
    with tempfile.TemporaryDirectory(prefix="grade-") as tmp, contextlib.ExitStack() as cleanup:
        cleanup.callback(ledger.settle)
        workdir = Path(tmp) / notebook.parent.name
        copy = prepare_copy(notebook, workdir, strip_checks=strip_checks)
        nb = nbformat.read(copy, as_version=4)  # type: ignore[no-untyped-call]
        run = Execution(notebook=notebook, workdir=workdir, cells=len(nb.cells), executed=nb)
        deadline = time.monotonic() + total_timeout

        def timeout_for(cell: Any) -> int:
            return max(1, int(min(cell_timeout, deadline - time.monotonic()) + 0.999))

        km = AsyncKernelManager(kernel_name=kernel_name)
        client = _GradingClient(
            nb,
            km=km,
            max_output_bytes=max_output_bytes,
            timeout_func=timeout_for,
            startup_timeout=60,
            interrupt_on_timeout=False,
            allow_errors=True,  # like nbgrader: a failing cell is recorded, the next cells still run
            resources={"metadata": {"path": str(workdir)}},
        )
        env = {**_inherited_env(), "LAB_HOME": str(settings.home), "LAB_BACKEND": settings.backend}
        started = time.monotonic()
        try:
            with client.setup_kernel(cwd=str(workdir), env=env):
                # The notebook's time limit counts from a running kernel (start-up has its own
                # limit, and a busy machine must not eat the student's time).
                deadline = time.monotonic() + total_timeout
                provisioner = getattr(km, "provisioner", None)
                run.kernel_pid = int(getattr(provisioner, "pid", 0) or 0)
                index = -1
                try:
                    for index, cell in enumerate(nb.cells):
                        if time.monotonic() > deadline:
                            raise CellTimeoutError(
                                f"total timeout of {total_timeout:.0f} s reached"
                            )
                        client.execute_cell(cell, index)
                        ledger.sample(run.kernel_pid)
                        error = _cell_error(cell)
                        if error is not None and run.reason is None:
                            run.failed_cell = index
                            run.reason = f"cell {index + 1} raised {error}"
                        if client.flooded:
                            run.reason = (
                                f"cell {index + 1} printed more than {max_output_bytes // 1000} kB of "
                                "output; the grade stops there"
                            )
                            run.failed_cell = index
                            run.stopped = True
                            break
                        if on_cell is not None:
                            on_cell(index, len(nb.cells), time.monotonic() - started)
                    else:
                        run.ok = run.reason is None
                except CellTimeoutError:
                    run.failed_cell = index
                    run.stopped = True
                    run.reason = (
                        (
                            f"cell {_one_based(run.failed_cell)} printed more than "
                            f"{max_output_bytes // 1000} kB of output; the grade stops there"
                        )
                        if client.flooded
                        else (
                            f"cell {_one_based(run.failed_cell)} did not finish in time (cell limit "
                            f"{cell_timeout:.0f} s, notebook limit {total_timeout:.0f} s)"
                        )
                    )
                except DeadKernelError:
                    run.failed_cell = index
                    run.stopped = True
                    run.reason = f"the kernel died while running cell {_one_based(run.failed_cell)}"
                except CellExecutionError as exc:  # raised by nbclient for some kernel errors
                    run.failed_cell = index
                    run.stopped = True
                    run.reason = f"cell {_one_based(run.failed_cell)} raised {_describe_error(exc)}"
                run.seconds = time.monotonic() - started
                run.finished_at = time.time()
                try:
                    yield run
                finally:
                    ledger.sample(run.kernel_pid)
                    _stop_tree(run.kernel_pid, km, client)
        except RuntimeError as exc:  # the kernel could not start at all
            if run.reason is None and not run.ok:
                run.reason = f"the kernel {kernel_name!r} did not start: {exc}"
                run.stopped = True
                run.seconds = time.monotonic() - started
                yield run
            else:
                raise


def _inherited_env() -> dict[str, str]:
    # The kernel runs with the grader's environment (PATH, the venv), minus Jupyter's own
    # per-process variables; LAB_* are then set from the grading settings.
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("JPY_")}


def _cell_error(cell: Any) -> str | None:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            value = str(out.get("evalue", "")).strip().splitlines()
            return (
                f"{out.get('ename', 'an error')}: {value[0][:300]}"
                if value
                else str(out.get("ename"))
            )
    return None


def _one_based(index: int | None) -> str:
    return "?" if index is None else str(index + 1)
