"""Runs the first stages (dataset, data, pretrain) of runs/gpu-recipe/exp.toml here, so that the GPU machine skips them."""
from mfuse.recipe import Recipe, load_experiment
from mfuse.recipe.run import run_facts, run_stages

if __name__ == "__main__":
    recipe = Recipe(load_experiment("runs/gpu-recipe/exp.toml"), progress=False)
    stages = recipe.stages(run_facts(recipe))
    run_stages(recipe, stages[:3], print)
