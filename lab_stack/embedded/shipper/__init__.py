"""The embedded log shipper: a Promtail stand-in that tails files and pushes their lines to Loki.

Run ``python -m lab_stack.embedded.shipper --config promtail.yml``. It reads the Promtail YAML
subset described in :mod:`lab_stack.embedded.shipper.config`; where a real ``promtail`` binary is on
PATH the lab stack runs that instead, with the same file.
"""

from __future__ import annotations

from lab_stack.embedded.shipper.config import ShipperConfig, load_config, parse_config
from lab_stack.embedded.shipper.pipeline import SUPPORTED_STAGES, Pipeline
from lab_stack.embedded.shipper.positions import Position, read_positions, write_positions
from lab_stack.embedded.shipper.shipper import Shipper, ShipperMetrics

__all__ = [
    "SUPPORTED_STAGES",
    "Pipeline",
    "Position",
    "Shipper",
    "ShipperConfig",
    "ShipperMetrics",
    "load_config",
    "parse_config",
    "read_positions",
    "write_positions",
]
