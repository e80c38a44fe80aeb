"""Experiment files and flags (mfuse.recipe.experiment): defaults, overrides, and one line naming the file, the key
and the problem for every bad input."""
from pathlib import Path

import pytest

from mfuse.prep.frames import ExtractSettings
from mfuse.recipe.experiment import COMMAND_LINE, ExperimentError, load_experiment, merge_flags

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def dataset(tmp_path):
    (tmp_path / "UCF-101").mkdir()
    (tmp_path / "lists").mkdir()
    return tmp_path


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


def minimal(root: Path, extra: str = "") -> str:
    return (f'out = "{root / "run"}"\n[dataset]\nformat = "ucf101"\nvideos = "{root / "UCF-101"}"\n'
            f'lists = "{root / "lists"}"\n' + extra)


def test_a_minimal_file_takes_the_paper_defaults(dataset):
    experiment = load_experiment(write(dataset, minimal(dataset)))
    assert experiment.dataset.splits == (1, 2, 3)
    assert experiment.model.backbone == "cnn_m_2048" and experiment.model.imagenet is None
    assert experiment.data.extract == ExtractSettings()
    spatial = experiment.schedule("spatial")
    assert (spatial.base_lr, spatial.steps, spatial.max_iter, spatial.batch) == (1e-2, (14000,), 20000, 256)
    assert experiment.schedule("fusion").max_iter == 60000 and experiment.batch("fusion") == 64
    assert experiment.data_root == dataset / "run" / "data"


def test_tables_set_fields_and_flags_override_the_file(dataset):
    text = minimal(dataset, '[data]\nflow_algorithm = "dis"\nfixed_size = [340, 256]\nshort_side = "none"\n'
                            '[model]\nbackbone = "vgg19"\n[train]\nseeds = [1, 2]\n[train.temporal]\nmax_iter = 100\n'
                            'steps = [50]\n')
    path = write(dataset, text)
    experiment = load_experiment(path, {"gpus": [0, 1], "split_ids": [2], "backbone": "tiny", "videos": None})
    assert experiment.model.backbone == "tiny" and experiment.train.gpus == (0, 1)
    assert experiment.dataset.splits == (2,) and experiment.train.seeds == (1, 2)
    assert experiment.data.extract.fixed_size == (340, 256) and experiment.data.extract.short_side is None
    assert experiment.data.extract.flow_algorithm == "dis"
    temporal = experiment.schedule("temporal")
    assert (temporal.max_iter, temporal.steps) == (100, (50,))
    assert experiment.as_json()["train"]["schedules"] == {"temporal": {"max_iter": 100, "steps": [50]}}


def test_flags_alone_make_an_experiment(dataset):
    experiment = load_experiment(None, {"out": dataset / "run", "dataset": "ucf101", "videos": dataset / "UCF-101",
                                        "splits": dataset / "lists", "backbone": "vgg19", "gpus": [0]})
    assert experiment.source == COMMAND_LINE and experiment.model.backbone == "vgg19"


@pytest.mark.parametrize("extra, key, problem", [
    ("[model]\nbackbone = \"vgg19\"\ndropout = 0.5\n", "model.dropout", "unknown key"),
    ("[train]\nseeds = \"one\"\n", "train.seeds", "expected a non-empty list of integers"),
    ("[train]\nseeds = [1, true]\n", "train.seeds", "expected an integer, got bool"),
    ("[data]\nworkers = 0\n", "data.workers", "must be >= 1"),
    ("[data]\nflow_algorithm = \"brox\"\n", "data.flow_algorithm", "unknown flow algorithm"),
    ("[data]\nflow_algorithm = \"none\"\n", "data.flow_algorithm", "need optical flow"),
    ("[train.spatial]\nmax_iter = \"long\"\n", "train.spatial.max_iter", "expected an integer"),
    ("[train.fusion]\nbatch = 100\n", "train.fusion.batch", "not a multiple"),
    ("[train]\nheldout_fraction = 1.0\n", "train.heldout_fraction", "must be in [0.0, 1.0)"),
    ("[dataset.synthetic]\nnum_groups = 4\n", "dataset.synthetic", "only for format"),
    ("[model]\npretrain = \"standin\"\n", "model.pretrain", "tiny backbone"),
    ("[pretrain]\nbatch_size = 8\n", "pretrain", "only with model.pretrain"),
    ("[model]\nbackbone = \"tiny\"\npretrain = \"standin\"\n[pretrain.images]\nnum_shapes = 99\n",
     "pretrain.images.num_shapes", "num_shapes must be in"),
    ("[model]\nbackbone = \"tiny\"\npretrain = \"standin\"\n[pretrain]\nbatch_size = 7\n",
     "pretrain.schedule.batch", "not a multiple of pretrain.batch_size 7"),
    ("[model]\nbackbone = \"tiny\"\npretrain = \"standin\"\n[pretrain]\ncrop_size = 80\n", "pretrain.crop_size",
     "exceeds the images' size"),
    ("[model]\nbackbone = \"tiny\"\npretrain = \"standin\"\n[pretrain.schedule]\nsteps = [9, 3]\n",
     "pretrain.schedule.max_iter", "rising steps"),
    ("[test]\ncrops = \"five\"\n", "test.crops", "expected one of"),
    ("[train]\nspatial = 3\n", "train.spatial", "expected a table"),
])
def test_a_bad_key_is_one_line_naming_file_key_and_problem(dataset, extra, key, problem):
    path = write(dataset, minimal(dataset, extra))
    with pytest.raises(ExperimentError) as error:
        load_experiment(path)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{path}: {key}: ") and problem in message


def test_the_pretraining_tables_override_the_stand_ins_defaults(dataset):
    from mfuse.pretrain import ImageTaskConfig, PretrainConfig

    path = write(dataset, minimal(dataset, '[model]\nbackbone = "tiny"\npretrain = "standin"\n[pretrain]\n'
                                           'batch_size = 16\n[pretrain.images]\nnum_hues = 3\nsize = [80, 72]\n'
                                           '[pretrain.schedule]\nmax_iter = 40\nsteps = [30]\n'))
    config = load_experiment(path).pretrain
    assert config.images == ImageTaskConfig(num_hues=3, size=(80, 72)) and config.batch_size == 16
    assert (config.schedule.max_iter, config.schedule.steps) == (40, (30,))
    assert config.schedule.base_lr == PretrainConfig().schedule.base_lr and config.backbone == "tiny"
    assert load_experiment(write(dataset, minimal(dataset))).pretrain is None


def test_missing_dataset_and_missing_keys(dataset):
    path = write(dataset, minimal(dataset).replace(str(dataset / "UCF-101"), str(dataset / "nowhere")))
    with pytest.raises(ExperimentError, match=rf"^{path}: dataset.videos: .*nowhere does not exist$"):
        load_experiment(path)
    path = write(dataset, f'out = "{dataset}"\n[dataset]\nformat = "ucf101"\n')
    with pytest.raises(ExperimentError, match=r"dataset.videos: missing"):
        load_experiment(path)
    with pytest.raises(ExperimentError, match=r"model.imagenet: .*missing.caffemodel does not exist"):
        load_experiment(write(dataset, minimal(dataset, '[model]\nimagenet = "missing.caffemodel"\n')))


def test_bad_toml_and_missing_file(tmp_path):
    with pytest.raises(ExperimentError, match=r"exp.toml: \(file\): not valid TOML"):
        load_experiment(write(tmp_path, "out = [\n"))
    with pytest.raises(ExperimentError, match=r"absent.toml: \(file\): does not exist"):
        load_experiment(tmp_path / "absent.toml")


def test_a_bad_flag_names_the_flag(dataset):
    with pytest.raises(ExperimentError, match=r"^command line: --seeds: values repeat"):
        load_experiment(write(dataset, minimal(dataset)), {"seeds": [1, 1]})
    _, origins = merge_flags({"out": "x", "dataset": {"format": "ucf101"}}, {"backbone": "tiny"}, "f.toml")
    assert origins[("", "out")] == origins[("dataset", "format")] == "f.toml"
    assert origins[("model", "backbone")] == COMMAND_LINE


@pytest.mark.parametrize("name", ["demo.toml", "ucf101_vgg19.toml", "hmdb51_cnn_m.toml"])
def test_the_committed_experiments_are_valid(name):
    path = ROOT / "experiments" / name
    if name == "demo.toml":
        experiment = load_experiment(path)
        assert experiment.dataset.format == "synthetic" and experiment.model.backbone == "tiny"
        return
    # The real datasets are not here: the file is valid up to the first missing input, the videos.
    with pytest.raises(ExperimentError, match=rf"^{path}: dataset.videos: .* does not exist$"):
        load_experiment(path)
