"""The built-in demo: the paper's whole pipeline on the synthetic dataset (``run``) and its report
(``report``, which takes plain data)."""
from __future__ import annotations

from mfuse.demo.report import ROWS, write_report
from mfuse.demo.run import DemoConfig, quick_config, run_demo

__all__ = ["ROWS", "DemoConfig", "quick_config", "run_demo", "write_report"]
