"""The built-in main job (mfuse.demo.run): the synthetic layout parses with the real split parsers, and a --quick
run makes every artifact."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mfuse.datasets import get_dataset
from mfuse.demo import ROWS, quick_config, run_demo
from mfuse.evaluation import ScoreCollector, evaluate, load_scores
from mfuse.synthetic.generator import SyntheticConfig, generate
from mfuse.synthetic.layout import HMDB51_SPLIT_DIR, UCF101_LIST_DIR

TOOLS = Path(__file__).resolve().parents[1] / "tools"


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


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    config = quick_config(tmp_path_factory.mktemp("demo") / "run")
    return config, run_demo(config)


def test_quick_run_writes_every_artifact(quick_run):
    config, report = quick_run
    results = report.parent
    text = report.read_text()
    assert "SYNTHETIC" in text and "quick mode" in text
    for row in ROWS.values():
        assert f"| {row} |" in text
    for name in ("synthetic.md", "synthetic.csv", "results.json", "confusion_final_conv5.png",
                 "per_class_accuracy.png", "figure3_amplification.png", "figure4_fusion.png",
                 "curves_spatial.png", "curves_mfuse_conv5.png"):
        assert (results / name).stat().st_size > 100, name
    seed = config.out / "seed1"
    for net in ("spatial", "spatial_amp", "temporal", "baseline_a", "baseline_b", "mfuse_conv5", "mfuse_fc7"):
        assert (seed / "runs" / net / "snap_iter_6.caffemodel").exists(), net
        assert (seed / "scores" / f"{net}.npz").exists(), net


def test_reported_accuracy_is_recomputed_from_the_score_files(quick_run):
    config, report = quick_run
    accuracy = json.loads((report.parent / "results.json").read_text())["accuracy"]
    for net in ("spatial", "temporal", "mfuse_conv5"):
        scores = load_scores(config.out / "seed1" / "scores" / f"{net}.npz")
        independent = float(np.mean(np.argmax(scores.scores, axis=1) == scores.labels))
        assert accuracy[net] == [pytest.approx(independent)]
        assert evaluate(scores).num_videos == len(scores) > 0
        assert scores.frame_scores.shape[1:3] == (config.frames, 10)


def test_rerun_skips_finished_stages(quick_run):
    config, report = quick_run
    before = {p: p.stat().st_mtime_ns for p in (config.out / "seed1").rglob("*.caffemodel")}
    run_demo(config)
    after = {p: p.stat().st_mtime_ns for p in (config.out / "seed1").rglob("*.caffemodel")}
    assert before == after


def run_tool(*args):
    result = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout[result.stdout.index("{"):])


def test_test_net_and_fuse_scores_clis(quick_run, tmp_path):
    config, _ = quick_run
    seed = config.out / "seed1"
    outputs = {}
    for net, crop_size in (("spatial", ["--crop-size", 64]), ("temporal", [])):  # default: the net's 64
        out = tmp_path / f"{net}.npz"
        report = run_tool(TOOLS / "test_net.py", "--deploy", seed / "prototxt" / f"{net}_deploy.prototxt",
                          "--weights", seed / "runs" / net / "snap_iter_6.caffemodel", "--data", config.out / "data",
                          "--out", out, "--frames", 2, "--crops", "center", *crop_size)
        scores = load_scores(out)
        assert scores.frame_scores.shape[1:3] == (2, 1) and scores.meta["protocol"]["crop_size"] == 64
        assert report["accuracy"] == pytest.approx(evaluate(scores).accuracy)
        outputs[net] = out
    fused = run_tool(TOOLS / "fuse_scores.py", f"spatial={outputs['spatial']}", f"temporal={outputs['temporal']}",
                     "--weights", "spatial=1", "temporal=2", "--out", tmp_path / "fused.npz")
    assert set(fused) == {"spatial", "temporal", "fused"}
    assert fused["fused"] == pytest.approx(evaluate(load_scores(tmp_path / "fused.npz")).accuracy)


def test_evaluation_checkpoints_into_a_new_folder_and_resumes(quick_run, tmp_path):
    import caffe
    from mfuse.evaluation.resume import PartialScores, run_identity
    from mfuse.evaluation.testing import Protocol, evaluate_net
    from mfuse.stores.reader import open_frame_store

    config, _ = quick_run
    seed = config.out / "seed1"
    net = caffe.Net(str(seed / "prototxt" / "spatial_deploy.prototxt"),
                    str(seed / "runs" / "spatial" / "snap_iter_6.caffemodel"), caffe.TEST)
    stores = {"rgb": open_frame_store(config.out / "data", 1, "test", "rgb")}
    protocol = Protocol(frames=2, crop_mode="center", crop_size=64)
    out = tmp_path / "new" / "folder" / "spatial.npz"
    meta = {"split": 1, "subset": "test"}
    whole = evaluate_net(net, stores, out, meta, protocol, checkpoint_every=1, progress=False)
    assert out.exists() and not out.with_name(out.name + ".partial.npz").exists()
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
