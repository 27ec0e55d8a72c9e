"""Run the embedded Tempo: ``python -m lab_stack.embedded.tempo --http-port 3200 ...``."""

from __future__ import annotations

from lab_stack.embedded.tempo.app import main

if __name__ == "__main__":
    raise SystemExit(main())
