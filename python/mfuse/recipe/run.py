"""Running a plan: every stage whose provenance holds is skipped, the others run in order and are recorded.

``reproduce(experiment)`` checks the inputs that are cheap to check (lists, pretrained model, GPUs), writes
``<out>/experiment.json`` (every setting) and ``<out>/plan.txt``, then runs the stages; ``dry_run`` checks
everything (videos, disk) and returns the plan without running anything.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from mfuse.fileio import write_atomic
from mfuse.recipe.checks import check_gpus, check_pretrained, format_problems, inspect_inputs, problem, \
    synthetic_lists
from mfuse.recipe.estimates import human_duration, total
from mfuse.recipe.experiment import Experiment
from mfuse.recipe.plan import Facts, Recipe, Stage
from mfuse.recipe.provenance import Provenance


class InputError(ValueError):
    """The inputs do not allow the run; ``str()`` is at most a few lines, each naming file, key and problem."""


def plan_text(recipe: Recipe, stages: Sequence[Stage], facts: Facts, notes: Sequence[str] = ()) -> str:
    """The plan as printed by the dry run: the dataset, then each stage with its command and estimate."""
    exp = recipe.exp
    device = f"GPU {list(exp.train.gpus)}" if exp.train.gpus else "CPU"
    lines = [f"experiment: {exp.source} -> {exp.out}", facts.describe(exp.dataset.format),
             f"nets: {exp.model.backbone}, pretrained: {exp.model.imagenet or exp.model.pretrain}, on the {device}, "
             f"splits {list(exp.dataset.splits)}, seeds {list(exp.train.seeds)}", *notes, "", "stages:"]
    width = max(len(stage.name) for stage in stages)
    for stage in stages:
        lines.append(f"  {stage.name:<{width}}  {stage.estimate.text():>10}  {stage.command}")
    estimate = total(stage.estimate for stage in stages)
    lines += ["", f"total: {estimate.text()} ({estimate.basis})", "estimates from benchmarks/results:"]
    bases = sorted({stage.estimate.basis for stage in stages if stage.estimate.basis != "seconds"})
    lines += [f"  - {basis}" for basis in bases]
    return "\n".join(lines) + "\n"


def run_facts(recipe: Recipe) -> Facts:
    """The facts of a real run: the parsed lists (the synthetic set's from its parameters)."""
    if recipe.exp.dataset.format == "synthetic":
        return Facts.from_lists(synthetic_lists(recipe.exp))
    return Facts.from_lists(recipe.lists)


def quick_checks(recipe: Recipe, facts: Facts) -> list[str]:
    """The checks every run makes before starting: the pretrained model fits and the GPUs exist."""
    return check_pretrained(recipe, facts.classes) + check_gpus(recipe.exp)[0]


def dry_run(experiment: Experiment) -> str:
    """Checks every input; returns the plan. Raises InputError with the problems."""
    recipe = Recipe(experiment, progress=False)
    inspection = inspect_inputs(recipe)
    if inspection.problems:
        raise InputError(format_problems(inspection.problems))
    return plan_text(recipe, recipe.stages(inspection.facts), inspection.facts, inspection.notes)


def run_stages(recipe: Recipe, stages: Sequence[Stage], log: Callable[[str], None] = print) -> None:
    """Runs every stage that is not valid, in order, recording each one that finishes."""
    provenance = Provenance(recipe.exp.out / "provenance")
    prints = provenance.fingerprints
    for number, stage in enumerate(stages, 1):
        head = f"[{number}/{len(stages)}] {stage.name}"
        reason = None if stage.always else provenance.why_invalid(stage.name, stage.settings, stage.inputs(),
                                                                  stage.outputs())
        if not stage.always and reason is None:
            log(f"{head}: done before (provenance holds), skipped")
            continue
        log(f"{head}: {reason or 'runs every time'}; running")
        inputs = stage.inputs()
        identity = {"stage": stage.name, "settings": stage.settings, "inputs": prints.of_all(inputs)}
        start = time.perf_counter()
        stage.action(identity)
        seconds = time.perf_counter() - start
        provenance.write(stage.name, stage.settings, inputs, stage.outputs(), seconds)
        log(f"{head}: finished in {human_duration(seconds)}")


def reproduce(experiment: Experiment, progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """Runs the experiment (skipping what is done); returns the report ``<out>/results/results.md``.

    Raises:
        InputError: the lists, pretrained model or GPUs do not allow the run (nothing is started).
    """
    recipe = Recipe(experiment, progress=progress)
    try:
        facts = run_facts(recipe)
    except ValueError as error:   # SplitError is a ValueError
        raise InputError(problem(recipe.exp, "dataset.lists", str(error).splitlines()[0])) from None
    problems = quick_checks(recipe, facts)
    if problems:
        raise InputError(format_problems(problems))
    stages = recipe.stages(facts)
    recipe.exp.out.mkdir(parents=True, exist_ok=True)
    write_atomic(recipe.exp.out / "experiment.json", json.dumps(recipe.exp.as_json(), indent=1))
    write_atomic(recipe.exp.out / "plan.txt", plan_text(recipe, stages, facts))
    run_stages(recipe, stages, log)
    return recipe.results / "results.md"



