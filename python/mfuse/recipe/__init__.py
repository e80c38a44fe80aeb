"""The paper on any dataset in one command: a validated experiment (``experiment``), its plan of stages
(``plan``: data preparation, ImageNet init, the streams, fusion init, the fusion nets, the 25 x 10 tests, late
fusion, the report), provenance records that skip what is done (``provenance``), the dry run's checks
(``checks``, ``weights``, ``estimates``) and the run's report (``report``). ``tools/reproduce.py`` is its CLI;
the built-in demo is ``experiments/demo.toml``."""
from __future__ import annotations

from mfuse.recipe.experiment import Experiment, ExperimentError, load_experiment
from mfuse.recipe.plan import Facts, Recipe, Stage
from mfuse.recipe.run import InputError, dry_run, plan_text, reproduce

__all__ = ["Experiment", "ExperimentError", "Facts", "InputError", "Recipe", "Stage", "dry_run", "load_experiment",
           "plan_text", "reproduce"]
