"""The whole recipe (mfuse.recipe.run) on a 5-class UCF101-format set with 2 splits, the tiny backbone and a few
iterations: every artifact, the tables' rows against the score files, skipping on a rerun, kill-and-resume
mid-training, and the test_net / fuse_scores CLIs on its outputs."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from caffe.proto import caffe_pb2

from mfuse.conventions import NET_NAMES
from mfuse.datasets import get_dataset
from mfuse.evaluation import ScoreCollector, evaluate, load_scores
from mfuse.recipe import load_experiment, reproduce
from mfuse.recipe.report import CELLS
from mfuse.recipe.stages import HELDOUT_NETS, fusion_score_names, snapshot_complete
from mfuse.stores.reader import open_frame_store
from mfuse.synthetic.generator import SyntheticConfig, generate
from mfuse.synthetic.layout import HMDB51_SPLIT_DIR, UCF101_LIST_DIR
from recipe_helpers import FEW_ITERATIONS, small_synthetic_set

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"
SPLITS = (1, 2)
FINAL = {"spatial": 4, "spatial_amp": 4, "temporal": 4, "baseline_a": 12, "baseline_b": 12, "mfuse_conv5": 12,
         "mfuse_fc7": 12}


@pytest.mark.parametrize("layout, list_dir", [("ucf101", UCF101_LIST_DIR), ("hmdb51", HMDB51_SPLIT_DIR)])
def test_synthetic_layout_is_accepted_by_the_split_parsers(tmp_path, layout, list_dir):
    dataset = generate(tmp_path, SyntheticConfig(num_groups=4, clips_per_group=1, num_frames=3, layout=layout),
                       progress=False)
    parser = get_dataset(layout)
    assert parser.load_classes(tmp_path / list_dir) == dataset.classes
    for split in (1, 2, 3):
        train = parser.load_split(tmp_path / list_dir, split, "train", tmp_path)
        test = parser.load_split(tmp_path / list_dir, split, "test", tmp_path)
        assert train and test
        assert not {v.video_id for v in train} & {v.video_id for v in test}
        assert all(v.path.exists() for v in train + test)


def write_experiment(root: Path) -> Path:
    videos, lists = small_synthetic_set(root)
    path = root / "experiment.toml"
    path.write_text(f'out = "{root / "run"}"\n[dataset]\nformat = "ucf101"\nvideos = "{videos}"\nlists = "{lists}"\n'
                    f'splits = [1, 2]\n[data]\nshort_side = "none"\nflow_algorithm = "dis"\nworkers = 2\n'
                    f'[model]\nbackbone = "tiny"\n' + FEW_ITERATIONS)
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    experiment = load_experiment(write_experiment(root))
    lines = []
    report = reproduce(experiment, progress=False, log=lines.append)
    return experiment, root / "run", report, lines


def seed_dir(out: Path, split: int) -> Path:
    return out / f"split{split}" / "seed1"


def test_every_artifact_of_every_split(run):
    experiment, out, report, _ = run
    assert report == out / "results" / "results.md"
    for name in ("experiment.json", "plan.txt", "data/summary.json", "data/heldout.json", "provenance/data.json",
                 "provenance/report.json"):
        assert (out / name).is_file(), name
    for split in SPLITS:
        seed = seed_dir(out, split)
        for net in NET_NAMES:
            assert (seed / "runs" / net / f"snap_iter_{FINAL[net]}.caffemodel").is_file(), net
            assert (seed / "logs" / f"{net}.log").is_file()
            assert (seed / "scores" / f"{net}.npz").is_file()
            for kind in ("train_val", "deploy", "solver"):
                assert (seed / "prototxt" / f"{net}_{kind}.prototxt").is_file()
            assert (out / "provenance" / f"split{split}" / "seed1" / f"{net}.json").is_file()
        for net in ("baseline_a", "baseline_b", "mfuse_conv5", "mfuse_fc7"):
            assert (seed / "init" / f"{net}.caffemodel").is_file()
        for net in HELDOUT_NETS:
            assert load_scores(seed / "scores" / "heldout" / f"{net}.npz").subset == "val"
        for name in fusion_score_names(True):
            assert (seed / "fusion" / f"{name}.npz").is_file(), name
        weights = json.loads((seed / "fusion" / "weights.json").read_text())
        assert set(weights["searched"]) == {"conv5", "fc7"}
        assert all(w["subset"] == "val" for w in weights["searched"].values())
    results = out / "results"
    for folder in ("split1", "split2", "mean"):
        for table in ("table1", "table2", "table3"):
            assert (results / folder / f"{table}.md").stat().st_size > 100
    for picture in ("confusion_final_conv5.png", "per_class_accuracy.png", "figure3_amplification.png",
                    "figure4_fusion.png", "curves_spatial.png", "curves_mfuse_fc7.png"):
        assert (results / picture).stat().st_size > 1000, picture


def test_the_class_count_comes_from_the_lists(run):
    _, out, report, _ = run
    deploy = caffe_pb2.NetParameter()
    from google.protobuf import text_format
    text_format.Merge((seed_dir(out, 1) / "prototxt" / "mfuse_conv5_deploy.prototxt").read_text(), deploy)
    assert next(layer for layer in deploy.layer if layer.name == "cons_fc8").inner_product_param.num_output == 5
    assert load_scores(seed_dir(out, 2) / "scores" / "spatial.npz").num_classes == 5
    assert "5 classes" in report.read_text()


def test_heldout_videos_are_neither_trained_nor_tested(run):
    _, out, _, _ = run
    for split in SPLITS:
        train = {v.video_id for v in open_frame_store(out / "data", split, "train", "rgb").index.videos}
        test = {v.video_id for v in open_frame_store(out / "data", split, "test", "rgb").index.videos}
        held = {v.video_id for v in open_frame_store(out / "data" / "heldout", split, "train", "rgb").index.videos}
        assert held and train and test
        assert not held & train and not held & test and not train & test
        assert held == set(json.loads((out / "data" / "heldout.json").read_text())[str(split)])


def read_csv(path: Path) -> dict[tuple[str, str], str]:
    with open(path) as handle:
        return {(row["model"], row["column"]): row["mean"] for row in csv.DictReader(handle)}


def test_table_rows_are_recomputed_from_the_score_files(run):
    _, out, _, _ = run
    for folder, splits in (("split1", (1,)), ("split2", (2,)), ("mean", SPLITS)):
        rows = {}
        for table in ("table1", "table2", "table3"):
            rows.update(read_csv(out / "results" / folder / f"{table}.csv"))
        expected = {}
        for name, (_, row, column) in CELLS.items():
            accuracies = []
            for split in splits:
                directory = "fusion" if name not in NET_NAMES else "scores"
                scores = load_scores(seed_dir(out, split) / directory / f"{name}.npz")
                accuracies.append(np.mean(np.argmax(scores.scores, axis=1) == scores.labels))
            expected[(row, column or "tiny")] = f"{100 * np.mean(accuracies):.2f}"
        assert rows == expected


def test_rerun_skips_every_stage(run):
    experiment, out, _, _ = run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.suffix in (".caffemodel", ".npz", ".md")}
    lines = []
    reproduce(experiment, progress=False, log=lines.append)
    ran = [line for line in lines if "running" in line]
    assert ran and all(line.split(": ")[0].endswith("/nets") for line in ran)
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.suffix in (".caffemodel", ".npz", ".md")}
    assert before == after


def weights_of(caffemodel: Path) -> dict:
    net = caffe_pb2.NetParameter()
    net.ParseFromString(caffemodel.read_bytes())
    return {layer.name: [np.array(blob.data) for blob in layer.blobs] for layer in net.layer if layer.blobs}


def test_kill_and_resume_mid_training_gives_the_same_tables(run, tmp_path):
    experiment, out, _, _ = run
    seed = seed_dir(out, 2)
    final = seed / "runs" / "mfuse_fc7" / "snap_iter_12.caffemodel"
    whole_weights = weights_of(final)
    shutil.copytree(out / "results", tmp_path / "whole")
    # Forget the last net of the run and everything made from it, then run, kill after its first snapshot.
    shutil.rmtree(seed / "runs" / "mfuse_fc7")
    for path in (seed / "scores" / "mfuse_fc7.npz", seed / "scores" / "heldout" / "mfuse_fc7.npz"):
        path.unlink()
    shutil.rmtree(seed / "fusion")
    shutil.rmtree(out / "results")
    command = [sys.executable, str(TOOLS / "reproduce.py"), experiment.source, "--quiet"]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state = final.with_name("snap_iter_3.solverstate")
    deadline = time.monotonic() + 240
    while not (state.is_file() and snapshot_complete(state, 3)):
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not final.exists(), "the run finished before it was killed"
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Resuming from" in (seed / "logs" / "mfuse_fc7.log").read_text()
    assert list((seed / "logs").glob("mfuse_fc7.until_iter_*.log"))
    resumed_weights = weights_of(final)
    assert all(np.array_equal(a, b) for name in whole_weights for a, b in zip(whole_weights[name],
                                                                                resumed_weights[name]))
    for folder in ("split1", "split2", "mean"):
        for table in ("table1", "table2", "table3"):
            assert (out / "results" / folder / f"{table}.csv").read_text() == \
                (tmp_path / "whole" / folder / f"{table}.csv").read_text()
    assert json.loads((out / "results" / "results.json").read_text())["accuracy"] == \
        json.loads((tmp_path / "whole" / "results.json").read_text())["accuracy"]


def run_tool(*args):
    result = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout[result.stdout.index("{"):])


def test_test_net_and_fuse_scores_clis(run, tmp_path):
    _, out, _, _ = run
    seed = seed_dir(out, 1)
    outputs = {}
    for net, crop_size in (("spatial", ["--crop-size", 64]), ("temporal", [])):  # default: the net's 64
        target = tmp_path / f"{net}.npz"
        report = run_tool(TOOLS / "test_net.py", "--deploy", seed / "prototxt" / f"{net}_deploy.prototxt",
                          "--weights", seed / "runs" / net / "snap_iter_4.caffemodel", "--data", out / "data",
                          "--out", target, "--frames", 2, "--crops", "center", *crop_size)
        scores = load_scores(target)
        assert scores.frame_scores.shape[1:3] == (2, 1) and scores.meta["protocol"]["crop_size"] == 64
        assert report["accuracy"] == pytest.approx(evaluate(scores).accuracy)
        outputs[net] = target
    fused = run_tool(TOOLS / "fuse_scores.py", f"spatial={outputs['spatial']}", f"temporal={outputs['temporal']}",
                     "--weights", "spatial=1", "temporal=2", "--out", tmp_path / "fused.npz")
    assert set(fused) == {"spatial", "temporal", "fused"}
    assert fused["fused"] == pytest.approx(evaluate(load_scores(tmp_path / "fused.npz")).accuracy)


def test_evaluation_checkpoints_into_a_new_folder_and_resumes(run, tmp_path):
    import caffe
    from mfuse.evaluation.resume import PartialScores, run_identity
    from mfuse.evaluation.testing import Protocol, evaluate_net

    _, out, _, _ = run
    seed = seed_dir(out, 1)
    net = caffe.Net(str(seed / "prototxt" / "spatial_deploy.prototxt"),
                    str(seed / "runs" / "spatial" / "snap_iter_4.caffemodel"), caffe.TEST)
    stores = {"rgb": open_frame_store(out / "data", 1, "test", "rgb")}
    protocol = Protocol(frames=2, crop_mode="center", crop_size=64)
    target = tmp_path / "new" / "folder" / "spatial.npz"
    meta = {"split": 1, "subset": "test"}
    whole = evaluate_net(net, stores, target, meta, protocol, checkpoint_every=1, progress=False)
    assert target.exists() and not target.with_name(target.name + ".partial.npz").exists()
    # An interrupted run left a partial file with the first videos: the rerun only adds the others.
    partial = ScoreCollector(whole.num_classes)
    for i in range(3):
        partial.add(str(whole.video_ids[i]), int(whole.labels[i]), whole.frame_scores[i].astype(np.float64))
    resumed_out = tmp_path / "resumed.npz"
    identity = run_identity(net, meta, protocol, list(net.blobs)[-1], net.layers[-1].type != "Softmax")
    PartialScores(resumed_out, identity).save(partial)  # what the interrupted run of the same net wrote
    resumed = evaluate_net(net, stores, resumed_out, meta, protocol, progress=False)
    np.testing.assert_allclose(np.sort(resumed.scores, axis=0), np.sort(whole.scores, axis=0), rtol=1e-3)
    assert sorted(map(str, resumed.video_ids)) == sorted(map(str, whole.video_ids))


def test_the_synthetic_dataset_is_generated_then_prepared(tmp_path):
    from mfuse.recipe import Recipe
    from mfuse.recipe.run import run_facts, run_stages

    path = tmp_path / "synthetic.toml"
    path.write_text(f'out = "{tmp_path / "run"}"\n[dataset]\nformat = "synthetic"\nsplits = [2]\n'
                    '[dataset.synthetic]\nnum_groups = 4\nclips_per_group = 1\nnum_frames = 6\n'
                    '[data]\nshort_side = "none"\nflow_algorithm = "dis"\n[model]\nbackbone = "tiny"\n'
                    '[train]\nheldout_fraction = 0\n')
    recipe = Recipe(load_experiment(path), progress=False)
    facts = run_facts(recipe)
    assert (facts.classes, facts.videos, dict(facts.test)) == (8, 32, {2: 8})
    stages = recipe.stages(facts)
    assert [stage.name for stage in stages[:2]] == ["dataset", "data"]
    lines = []
    run_stages(recipe, stages[:2], lines.append)
    assert (tmp_path / "run" / "dataset" / "synthetic.json").is_file()
    store = open_frame_store(tmp_path / "run" / "data", 2, "test", "flow")
    assert len(store.index.videos) == 8 and store.index.classes == recipe.lists.classes
    assert not (tmp_path / "run" / "data" / "heldout").exists()
    run_stages(recipe, stages[:2], lines.append)
    assert lines[-2:] == ["[1/2] dataset: done before (provenance holds), skipped",
                          "[2/2] data: done before (provenance holds), skipped"]


#: The built-in demo's path in small: the synthetic set at 96 x 72 (the tiny backbone's 64 x 64 crops), the
#: pretraining stand-in on a few images, mean flow subtraction, a few iterations of every net, two seeds.
STANDIN = """\
[dataset]
format = "synthetic"
splits = [1]
[dataset.synthetic]
num_groups = 4
clips_per_group = 1
size = [96, 72]
num_frames = 12
[data]
short_side = "none"
flow_algorithm = "dis"
flow_subtract = "mean"
bound = 6.0
[model]
backbone = "tiny"
pretrain = "standin"
[pretrain]
batch_size = 8
[pretrain.images]
num_shapes = 2
num_hues = 2
num_textures = 1
train_per_class = 4
val_per_class = 2
[pretrain.schedule]
max_iter = 4
steps = [2]
snapshot = 4
batch = 8
test_interval = 4
test_iter = 1
"""


def test_the_pretraining_stand_in_runs_end_to_end_with_the_mechanism_check(tmp_path):
    from mfuse.pretrain import PRETRAINED_MODEL

    few = FEW_ITERATIONS.replace("seeds = [1]", "seeds = [1, 2]").replace("heldout_fraction = 0.34",
                                                                           "heldout_fraction = 0")
    path = tmp_path / "standin.toml"
    path.write_text(f'out = "{tmp_path / "run"}"\n' + STANDIN + few)
    lines = []
    report = reproduce(load_experiment(path), progress=False, log=lines.append)
    out = tmp_path / "run"
    pretrained = out / "pretrain" / PRETRAINED_MODEL
    manifest = json.loads((out / "pretrain" / "pretrain.json").read_text())
    assert pretrained.is_file() and manifest["config"]["images"]["num_hues"] == 2
    assert (out / "provenance" / "pretrain.json").is_file()
    # The streams start from the stand-in as from an ImageNet model: the spatial init holds its convs.
    net = caffe_pb2.NetParameter()
    net.ParseFromString(pretrained.read_bytes())
    init = caffe_pb2.NetParameter()
    init.ParseFromString((seed_dir(out, 1) / "init" / "spatial.caffemodel").read_bytes())
    conv1 = {layer.name: layer for layer in net.layer}["conv1"].blobs[0].data
    assert list({layer.name: layer for layer in init.layer}["conv1"].blobs[0].data) == list(conv1)
    text = report.read_text()
    for heading in ("## Mechanism check", "designed ceiling", "mean gate on moving discs", "binding pair",
                    "## Time per stage", "| pretrain |"):
        assert heading in text, heading
    results = json.loads((out / "results" / "results.json").read_text())
    gate = results["mechanism"]["gate"]
    assert gate["frames"] > 0 and gate["moving"] > gate["background"] >= 1.0
    assert len(results["mechanism"]["losses"]["temporal"]) == 2
    assert results["timings"]["pretrain"] > 0
    # Everything holds on a rerun: every stage, the pretraining included, is skipped.
    again = []
    reproduce(load_experiment(path), progress=False, log=again.append)
    assert not [line for line in again if line.endswith("; running") and "/nets:" not in line]
