"""The plan (mfuse.recipe.plan): the stages of a run in order, their inputs and commands, the nets' settings."""
from pathlib import Path

from mfuse.recipe import Facts, Recipe, load_experiment
from mfuse.recipe.plan import command, rel
from recipe_helpers import write_caffemodel

FACTS = Facts(classes=7, videos=30, train={1: 10, 2: 10}, heldout={1: 2, 2: 2}, test={1: 5, 2: 5})


def experiment(tmp_path, extra=""):
    (tmp_path / "v").mkdir(exist_ok=True)
    (tmp_path / "l").mkdir(exist_ok=True)
    path = tmp_path / "e.toml"
    path.write_text(f'out = "{tmp_path / "run"}"\n[dataset]\nformat = "hmdb51"\nvideos = "{tmp_path / "v"}"\n'
                    f'lists = "{tmp_path / "l"}"\nsplits = [1, 2]\n' + extra)
    return load_experiment(path)


def names(stages):
    return [stage.name for stage in stages]


def test_stage_order_without_imagenet(tmp_path):
    stages = Recipe(experiment(tmp_path, "[model]\nbackbone = \"tiny\"\n[train]\nseeds = [3]\n")).stages(FACTS)
    got = names(stages)
    assert got[0] == "data" and got[-1] == "report"
    split1 = [n.split("/", 2)[2] for n in got if n.startswith("split1/seed3/")]
    assert split1 == ["nets", "spatial", "spatial_amp", "temporal", "init_baseline_a", "baseline_a", "init_baseline_b",
                      "baseline_b", "init_mfuse_conv5", "mfuse_conv5", "init_mfuse_fc7", "mfuse_fc7",
                      "test_spatial", "test_spatial_amp", "test_temporal", "test_baseline_a", "test_baseline_b",
                      "test_mfuse_conv5", "test_mfuse_fc7", "heldout_spatial_amp", "heldout_temporal",
                      "heldout_mfuse_conv5", "heldout_mfuse_fc7", "fusion"]
    assert sum(n.startswith("split2/seed3/") for n in got) == len(split1)


def test_imagenet_init_and_the_nets_settings(tmp_path):
    weights = write_caffemodel(tmp_path / "m.caffemodel", {"conv1": [(96, 3, 7, 7)]})
    recipe = Recipe(experiment(tmp_path, f'[model]\nimagenet = "{weights}"\n[train]\nheldout_fraction = 0\n'
                                         '[train.fusion]\nmax_iter = 30\nsteps = [10]\n'))
    stages = {stage.name: stage for stage in recipe.stages(FACTS)}
    assert "split1/seed1/init_spatial" in stages and "--cross-modality" in stages["split1/seed1/init_temporal"].command
    assert not any("heldout_" in name for name in stages)
    spatial = stages["split2/seed1/spatial"]
    assert f"--weights {rel(recipe.init(2, 1, 'spatial'))}" in spatial.command
    assert recipe.init(2, 1, "spatial") in spatial.inputs()
    assert stages["split2/seed1/spatial_amp"].inputs()[2] == recipe.final(2, 1, "spatial")
    assert recipe.final(1, 1, "mfuse_fc7").name == "snap_iter_30.caffemodel"
    net_set = recipe.net_set(2, 1, FACTS.classes)
    assert (net_set.num_classes, net_set.split, net_set.seed, net_set.freeze_spatial_convs) == (7, 2, 1, True)
    assert net_set.fusion_schedule.max_iter == 30 and net_set.source == str(recipe.data_root)
    assert Path(net_set.runs_dir) == recipe.seed_dir(2, 1) / "runs"


def test_commands_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert rel(tmp_path / "a" / "b") == "a/b" and rel("/elsewhere/x") == "/elsewhere/x"
    assert command("python", tmp_path / "x y.py", 3) == "python 'x y.py' 3"
    assert "Test" in FACTS.describe("Test") and "(+ 2 held out" in FACTS.describe("x")
