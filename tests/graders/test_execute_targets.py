"""A graded run takes out the scrape targets its kernel registered, and only those."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

import lab_stack
from graders.execute import run_notebook
from lab_stack.settings import Settings

pytestmark = pytest.mark.slow

JOB = "ledger-probe"


@pytest.fixture
def served_port() -> Iterator[int]:
    """A port listened on by this test process (another submission's service, as it were)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


def test_run_removes_its_own_targets_and_keeps_other_kernels(
    stack: lab_stack.Stack, lab_settings: Settings, tmp_path: Path, served_port: int
) -> None:
    """Targets registered by others before or during the run survive it; the kernel's go."""
    folder = tmp_path / "ex"
    folder.mkdir()
    nb = new_notebook(
        cells=[
            new_code_cell(
                "import http.server, threading, lab_stack\n"
                "srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), http.server.SimpleHTTPRequestHandler)\n"
                "threading.Thread(target=srv.serve_forever, daemon=True).start()\n"
                f"lab_stack.connect().register_target({JOB!r}, f'http://127.0.0.1:{{srv.server_port}}/metrics')\n"
                "port = srv.server_port"
            )
        ],
        metadata={
            "kernelspec": {"name": "workbook", "display_name": "workbook", "language": "python"}
        },
    )
    nbformat.write(nb, folder / "nb.ipynb")
    before = f"127.0.0.1:{served_port}"
    stack.register_target("ledger-other", f"http://{before}/metrics")
    try:
        with run_notebook(folder / "nb.ipynb", settings=lab_settings, total_timeout=60) as run:
            assert run.ok, run.reason
            mine = {t for g in stack.targets()[JOB] for t in g["targets"]}
            assert len(mine) == 1
            # another submission, graded at the same time, registers its service now
            stack.register_target(JOB, f"http://{before}/metrics")
        left = {t for g in stack.targets().get(JOB, []) for t in g["targets"]}
        assert left == {before}
        assert stack.targets()["ledger-other"][0]["targets"] == [before]
    finally:
        stack.unregister_target(JOB)
        stack.unregister_target("ledger-other")
