"""The knowledge check's child process: call the functions the notebook wrote, on the grader's inputs.

Run by :func:`graders.kc_checks.call_functions` as ``python -P graders/kc_worker.py FOLDER`` (``-P``:
neither this folder nor the ``graders`` package is imported, only the submission's modules, from
``FOLDER``, first on ``sys.path``). It reads one JSON document from stdin,
``{"calls": [[module, function, args, kwargs], ...]}``, and writes one to the original stdout,
``{"results": [{"ok": true, "value": ...} | {"ok": false, "error": "..."}, ...]}``, one result per
call in order. The submission's own output goes to stderr, so it cannot corrupt the answer.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
import traceback
from pathlib import Path
from typing import Any


def _clean(value: Any) -> Any:
    """A JSON-ready copy of a returned value; NumPy scalars become Python ones, NaN/inf strings."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        value = value.item()  # NumPy scalar
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    return f"<{type(value).__name__}: {str(value)[:80]}>"


def _error_tail(exc: BaseException) -> str:
    """The last two lines of the traceback: where the submission raised, and what."""
    lines = "".join(traceback.format_exception(exc)).strip().splitlines()
    return " | ".join(lines[-2:])


def _call(module: str, function: str, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        fn = getattr(importlib.import_module(module), function)
        return {"ok": True, "value": _clean(fn(*args, **kwargs))}
    except BaseException as exc:  # the submission's error, whatever it is, is the answer
        if isinstance(exc, KeyboardInterrupt):
            raise
        return {"ok": False, "error": _error_tail(exc)}


def main(argv: list[str]) -> int:
    """Answer the calls read from stdin (see the module's docstring)."""
    sys.path.insert(0, str(Path(argv[0]).resolve()))
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    request = json.loads(sys.stdin.read())
    results = [_call(str(m), str(f), list(a), dict(k)) for m, f, a, k in request["calls"]]
    channel.write(json.dumps({"results": results}))
    channel.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
