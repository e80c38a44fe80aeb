"""The dry run (mfuse.recipe.checks, mfuse.recipe.run.dry_run) on a UCF101-format set of 101 classes with CRLF
lists and a weights file holding VGG19's layer names and shapes: the plan, and one line per bad input."""
import subprocess
import sys
from pathlib import Path

import pytest

from mfuse.recipe import InputError, dry_run, load_experiment
from mfuse.recipe import checks
from recipe_helpers import ucf101_like_set, write_caffemodel

ROOT = Path(__file__).resolve().parents[1]
#: VGG_ILSVRC_19_layers (Simonyan and Zisserman 2015): the published layer names and weight shapes.
VGG19_CONVS = [("conv1_1", 3, 64), ("conv1_2", 64, 64), ("conv2_1", 64, 128), ("conv2_2", 128, 128),
               ("conv3_1", 128, 256)] + [(f"conv3_{i}", 256, 256) for i in (2, 3, 4)] + [("conv4_1", 256, 512)] \
    + [(f"conv4_{i}", 512, 512) for i in (2, 3, 4)] + [(f"conv5_{i}", 512, 512) for i in (1, 2, 3, 4)]
VGG19 = {**{name: [(out, inp, 3, 3), (out,)] for name, inp, out in VGG19_CONVS},
         "fc6": [(4096, 25088), (4096,)], "fc7": [(4096, 4096), (4096,)], "fc8": [(1000, 4096), (1000,)]}
NETS = ("spatial", "spatial_amp", "temporal", "baseline_a", "baseline_b", "mfuse_conv5", "mfuse_fc7")


@pytest.fixture(scope="module")
def ucf101(tmp_path_factory):
    root = tmp_path_factory.mktemp("ucf101")
    videos, lists = ucf101_like_set(root)
    weights = write_caffemodel(root / "VGG_ILSVRC_19_layers.caffemodel", VGG19)
    return root, videos, lists, weights


def experiment_file(root: Path, videos: Path, lists: Path, weights: Path, extra: str = "", name="exp.toml") -> Path:
    path = root / name
    path.write_text(f'out = "{root / "run"}"\n[dataset]\nformat = "ucf101"\nvideos = "{videos}"\nlists = "{lists}"\n'
                    f'[model]\nbackbone = "vgg19"\nimagenet = "{weights}"\n[data]\nworkers = 16\n'
                    f'[train]\ngpus = [0]\n' + extra)
    return path


@pytest.fixture
def one_gpu(monkeypatch):
    """One GPU, and the disk of a machine meant for the run (this one's may be smaller than a VGG19 run)."""
    monkeypatch.setattr(checks, "gpu_list", lambda: ["GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-test)"])
    monkeypatch.setattr(checks.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 2**50})())


def test_the_plan_of_ucf101_with_vgg19(ucf101, one_gpu):
    root, videos, lists, weights = ucf101
    plan = dry_run(load_experiment(experiment_file(root, videos, lists, weights)))
    assert "dataset: ucf101, 101 classes, 404 videos, 4848 frames of 341x256 after resizing" in plan
    for split in (1, 2, 3):
        assert f"split {split}: 202 training videos (+ 101 held out for the fusion weights), 101 test videos" in plan
    assert "GPUs: GPU 0: NVIDIA H100" in plan and "disk: about" in plan
    lines = plan.splitlines()
    for split in (1, 2, 3):
        prefix = f"  split{split}/seed1/"
        for net in NETS:
            train = next(line for line in lines if line.startswith(prefix + net + " "))
            assert f"tools/train.py {root}/run/split{split}/seed1/prototxt/{net}_solver.prototxt" in train
            assert "--gpus 0 " in train and "--batch" not in train
            assert any(line.startswith(f"{prefix}test_{net} ") and "tools/test_net.py" in line for line in lines)
        assert any(line.startswith(prefix + "init_spatial ") and "imagenet-init" in line for line in lines)
        assert any(line.startswith(prefix + "init_temporal ") and "--cross-modality" in line for line in lines)
        assert any(line.startswith(prefix + "fusion ") and "fuse_scores.py" in line for line in lines)
    # 20K iterations of 256 samples at the measured 17.6 ms per 32 (benchmarks/results: the cuDNN build's strict
    # FP32, H100): about 47 minutes.
    spatial = next(line for line in lines if line.startswith("  split1/seed1/spatial "))
    assert "~47 min" in spatial
    assert any("NVIDIA H100 80GB HBM3" in line and "18 ms per 32 samples" in line for line in lines)
    assert lines[-1].startswith("  - ") and "total: ~" in plan


def run_cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "reproduce.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_weights_that_do_not_fit_are_one_line(ucf101, tmp_path, one_gpu):
    root, videos, lists, _ = ucf101
    bad = write_caffemodel(tmp_path / "bad.caffemodel", {**VGG19, "conv1_1": [(64, 3, 5, 5), (64,)]})
    path = experiment_file(tmp_path, videos, lists, bad)
    with pytest.raises(InputError) as error:
        dry_run(load_experiment(path))
    assert str(error.value) == (f"{path}: model.imagenet: {bad} layer conv1_1 holds 64x3x5x5, 64, the vgg19 "
                                "spatial net expects 64x3x3x3, 64")
    cnn_m = write_caffemodel(tmp_path / "cnn_m.caffemodel", {"conv1": [(96, 3, 7, 7), (96,)]})
    with pytest.raises(InputError) as error:
        dry_run(load_experiment(experiment_file(tmp_path, videos, lists, cnn_m, name="cnn_m.toml")))
    lines = str(error.value).splitlines()
    assert len(lines) == 6 and lines[0].endswith("has no layer conv1_1 (the vgg19 spatial net expects 64x3x3x3, 64)")
    assert lines[-1] == "... and 13 more problem(s)"


def test_the_cli_prints_one_line_and_exits_2(ucf101, tmp_path):
    root, videos, lists, weights = ucf101
    bad = write_caffemodel(tmp_path / "bad.caffemodel", {**VGG19, "fc6": [(4096, 9216), (4096,)]})
    path = experiment_file(tmp_path, videos, lists, bad)
    done = run_cli(path, "--dry-run", "--gpus")     # --gpus with no id: the CPU
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {path}: model.imagenet: {bad} layer fc6 holds 4096x9216, 4096, the vgg19 spatial net expects "
        "4096x25088, 4096"]
    path = experiment_file(tmp_path, videos, lists, weights, extra="[test]\nframes = 0\n")
    done = run_cli(path, "--dry-run")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {path}: test.frames: must be >= 1, got 0"]


def test_missing_video_gpu_and_disk_problems(ucf101, tmp_path, monkeypatch):
    root, videos, lists, weights = ucf101
    experiment = load_experiment(experiment_file(root, videos, lists, weights))
    monkeypatch.setattr(checks, "gpu_list", lambda: None)
    with pytest.raises(InputError, match=r"train.gpus: \[0\] asked for, 0 NVIDIA GPU\(s\) found"):
        dry_run(experiment)
    monkeypatch.setattr(checks, "gpu_list", lambda: ["GPU 0: test"])
    monkeypatch.setattr(checks.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 2**20})())
    with pytest.raises(InputError, match=r": out: the run needs about .* GiB, 0.0 GiB are free"):
        dry_run(experiment)
    monkeypatch.setattr(checks.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 2**50})())
    missing = videos / "Action007" / "v_Action007_g02_c01.avi"
    missing.rename(tmp_path / "moved.avi")
    try:
        with pytest.raises(InputError) as error:
            dry_run(experiment)
    finally:
        (tmp_path / "moved.avi").rename(missing)
    assert str(error.value) == f"{experiment.source}: dataset.videos: {missing}: listed but missing"
    original = (lists / "testlist01.txt").read_bytes()
    (lists / "testlist01.txt").write_bytes(original + b"Unknown/v_x.avi\r\n")
    try:
        with pytest.raises(InputError) as error:
            dry_run(experiment)
    finally:
        (lists / "testlist01.txt").write_bytes(original)
    assert str(error.value) == (f"{experiment.source}: dataset.lists: {lists / 'testlist01.txt'}:102: class "
                                "'Unknown' is not in classInd.txt")


def test_the_demo_plan():
    plan = dry_run(load_experiment(ROOT / "experiments" / "demo.toml"))
    assert "dataset: synthetic, 8 classes, 256 videos" in plan and "split 1: 192 training videos, 64 test" in plan
    assert "tools/make_synthetic.py" in plan and "split1/seed3/mfuse_fc7" in plan and "heldout_" not in plan


def test_gpus_take_train_pys_comma_form_and_space_separated_ids(tmp_path):
    experiment = tmp_path / "exp.toml"
    experiment.write_text(f'out = "{tmp_path / "run"}"\n[dataset]\nformat = "synthetic"\n[model]\nbackbone = "tiny"\n')
    for gpus in (["0,1"], ["0", "1"]):
        done = run_cli(experiment, "--dry-run", "--gpus", *gpus)
        if done.returncode == 0:    # a machine with 2 GPUs or more
            assert "--gpus 0,1" in done.stdout
        else:                        # here: the check names the two ids it read
            assert "train.gpus: [0, 1] asked for" in done.stderr, done.stderr[-800:]
    done = run_cli(experiment, "--dry-run", "--gpus", "0,x")
    assert done.returncode == 2 and "'0,x' is not a GPU id or a comma-separated list of them" in done.stderr


def test_the_recipe_runs_prepared_data_without_pyav():
    # A GPU machine without PyAV trains and tests on data prepared elsewhere: only decoding imports it.
    script = ("import sys\n"
              "class NoAv:\n"
              "    def find_spec(self, name, path=None, target=None):\n"
              "        if name == 'av':\n"
              "            raise ImportError('no PyAV here')\n"
              "sys.meta_path.insert(0, NoAv())\n"
              "import mfuse.recipe.run, mfuse.prep.pipeline, mfuse.evaluation, mfuse.training\n"
              "from mfuse.prep.frames import count_frames\n"
              "try:\n"
              "    count_frames('x.avi')\n"
              "except ImportError as error:\n"
              "    print('decoding:', error)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "decoding: no PyAV here"
