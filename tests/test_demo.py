"""The built-in main job: the synthetic layout parses with the real split parsers, and a --quick run makes
every artifact."""
import json

import numpy as np
import pytest

from mfuse.datasets import get_dataset
from mfuse.demo import ROWS, quick_config, run_demo
from mfuse.evaluation import evaluate, load_scores
from mfuse.synthetic.generator import SyntheticConfig, generate
from mfuse.synthetic.layout import HMDB51_SPLIT_DIR, UCF101_LIST_DIR


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
