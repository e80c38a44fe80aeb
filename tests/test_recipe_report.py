"""The run's report from plain data (mfuse.recipe.report): Tables 1-3 per split and over splits, the paper's
numbers only for its datasets and backbones, the claims against the spread over seeds, the pictures."""
import json

import numpy as np
import pytest

from mfuse.evaluation.scores import ScoreSet
from mfuse.recipe.report import (CELLS, CLAIMS, ROWS, claim_lines, example_videos, loss_lines, mean_std,
                                 paper_dataset, table_specs, timing_lines, write_report)
from mfuse.synthetic import class_names

SYNTHETIC_CLASSES = class_names()

CLASSES = ["Left", "Right", "Up"]
VIDEO_IDS = np.array([f"{c}/v_{i}" for i, c in enumerate(["Up", "Left", "Right", "Left", "Up", "Right"])])
LABELS = np.array([2, 0, 1, 0, 2, 1])
LOG = """\
I1123 09:12:12.700000 41811 solver.cpp:239] Iteration 0 (0 iter/s, 3.1s/20 iters), loss = 1.1
I1123 09:12:12.700200 41811 sgd_solver.cpp:112] Iteration 0, lr = 0.01
I1123 09:12:20.100000 41811 solver.cpp:239] Iteration 20 (2.7 iter/s, 7.4s/20 iters), loss = 0.9
I1123 09:12:20.100200 41811 sgd_solver.cpp:112] Iteration 20, lr = 0.01
"""
#: Videos right per score set (of 6): amplification and m-fusion beat their bases.
CORRECT = {"spatial": 2, "spatial_amp": 4, "temporal": 3, "baseline_a": 2, "baseline_b": 3, "mfuse_conv5": 5,
           "mfuse_fc7": 4, "S+T": 2, "Samp+T": 4, "final_conv5": 6, "final_fc7": 5, "searched_conv5": 5,
           "searched_fc7": 1}


def score_set(correct: int, seed: int, split: int = 1) -> ScoreSet:
    """Scores whose first ``correct`` videos are right, the others wrong."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0, 0.2, (len(LABELS), len(CLASSES)))
    for i, label in enumerate(LABELS):
        scores[i, label if i < correct else (label + 1) % 3] += 1.0
    return ScoreSet(VIDEO_IDS, LABELS, scores.astype(np.float32), {"split": split, "subset": "test"})


def runs(splits=(1, 2), seeds=(1, 2)):
    return {(k, s): {name: score_set(CORRECT[name] + (s == 2 and name == "spatial"), s, k) for name in ROWS}
            for k in splits for s in seeds}


def about(**changes):
    base = {"format": "synthetic", "splits": [1, 2], "seeds": [1, 2], "backbone": "tiny",
            "pretrained": "no pretrained model", "temporal_init": "scratch", "fusion_activation": "NONE",
            "flow": "dis", "protocol": "3 frames x ten crops", "heldout_fraction": 0.2,
            "schedules_changed": {"spatial": {"max_iter": 6}}, "synthetic": {"num_groups": 4}}
    return {**base, **changes}


def test_write_report_from_plain_data(tmp_path):
    log = tmp_path / "logs" / "spatial.log"
    log.parent.mkdir()
    log.write_text(LOG)
    rng = np.random.default_rng(0)
    examples = {video_id: (rng.integers(0, 255, (48, 64, 3), dtype=np.uint8),
                           rng.integers(0, 30, (48, 64), dtype=np.uint8)) for video_id in VIDEO_IDS[:2]}
    results = write_report(tmp_path / "results", about(), runs(), CLASSES, examples, [log])
    text = results.read_text()
    assert results == tmp_path / "results" / "results.md"
    assert "SYNTHETIC" in text and "split 1: 6 test videos, split 2: 6 test videos" in text
    assert "Schedules changed from the backbone's: {'spatial': {'max_iter': 6}}" in text
    assert "minus 20% of their videos, held out for the fusion weight search" in text
    assert "## Split 1" in text and "## Split 2" in text and "## Mean over splits 1, 2 (the paper averages" in text
    for row in {row for _, row, _ in CELLS.values()}:
        assert f"| {row} |" in text
    assert len([line for line in text.splitlines() if line.startswith("- ") and "points (" in line]) == len(CLAIMS)
    data = json.loads((results.parent / "results.json").read_text())
    assert data["about"] == about() and data["classes"] == CLASSES
    assert data["accuracy"]["spatial"] == pytest.approx([2 / 6, 3 / 6])
    assert data["per_split"]["split2/seed1"]["final_conv5"] == 1.0
    for name in ("split1/table1.md", "split2/table3.csv", "mean/table2.md", "confusion_final_conv5.png",
                 "per_class_accuracy.png", "curves_spatial.png", "figure3_amplification.png", "figure4_fusion.png"):
        assert (results.parent / name).stat().st_size > 100, name
    one_split = write_report(tmp_path / "one", about(), runs(splits=(1,)), CLASSES, examples, [])
    assert "## Mean" not in one_split.read_text() and not (tmp_path / "one" / "mean").exists()


def test_paper_numbers_only_for_the_papers_datasets_and_backbones():
    ucf = about(format="ucf101", backbone="vgg19")
    assert paper_dataset(ucf, 101) == "UCF101" and paper_dataset(ucf, 100) is None
    assert paper_dataset(about(format="hmdb51", backbone="cnn_m_2048"), 51) == "HMDB51"
    assert paper_dataset(about(format="ucf101", backbone="tiny"), 101) is None
    specs = table_specs(ucf, 101)
    assert specs["table1"].paper == {("S", "base"): 78.8, ("S", "amp"): 81.0, ("T", "base"): 80.3,
                                     ("S + T", "base"): 87.8, ("S + T", "amp"): 88.5}
    assert specs["table2"].paper[("m-fusion (fc7)", "VGG19")] == 87.6 and specs["table2"].splits == (1,)
    assert specs["table3"].paper == {("S (amp) + T + m-fusion (conv5)", "VGG19"): 88.9,
                                     ("S (amp) + T + m-fusion (fc7)", "VGG19"): 89.1}
    hmdb = table_specs(about(format="hmdb51", backbone="cnn_m_2048"), 51)
    assert hmdb["table1"].paper[("S", "amp")] == 38.0 and hmdb["table2"].columns == ("basic",)
    assert not any(spec.paper for spec in table_specs(about(), 8).values())
    assert {spec.splits for spec in table_specs(about(), 8).values()} == {(1, 2)}
    assert [spec.splits for spec in specs.values()] == [(1, 2, 3), (1,), (1, 2, 3)]


def test_claims_are_weighed_against_the_spread_over_seeds():
    acc = {name: [0.5, 0.5] for name in ROWS}
    acc.update(spatial=[0.4, 0.5], spatial_amp=[0.8, 0.9], baseline_a=[0.6, 0.7], mfuse_conv5=[0.62, 0.68])
    lines = dict(zip([claim for claim, _, _ in CLAIMS], claim_lines(acc)))
    assert "S (amp) − S = +40.0 points (larger than the spread over seeds: supports the paper)" in \
        lines["feature amplification (Table 1)"]
    assert "within the spread over seeds: no difference claimed" in lines["m-fusion conv5 vs baseline A (Table 2)"]
    one_seed = claim_lines({name: [0.5] for name in ROWS})
    assert all("one seed only: no spread, nothing claimed" in line for line in one_seed)


def test_example_videos_spread_over_the_sorted_ids():
    chosen = example_videos(score_set(6, 0), count=3)
    assert chosen == sorted(VIDEO_IDS.tolist())[::2][:3]
    assert example_videos(score_set(6, 0), count=10) == sorted(VIDEO_IDS.tolist())


def synthetic_runs(seeds=(1, 2)):
    """Every score set on the 8 synthetic classes, one video per class, all right except each fusion's first."""
    labels = np.arange(len(SYNTHETIC_CLASSES))
    ids = np.array([f"{c}/v_{i}" for i, c in enumerate(SYNTHETIC_CLASSES)])
    out = {}
    for seed in seeds:
        scores = {}
        for name in ROWS:
            values = np.eye(len(labels), dtype=np.float32)
            if name.startswith(("S+T", "Samp+T")):
                values[0] = np.roll(values[0], 1)
            scores[name] = ScoreSet(ids, labels, values, {"split": 1, "subset": "test"})
        out[(1, seed)] = scores
    return out


def test_the_mechanism_section_and_stage_times(tmp_path):
    rng = np.random.default_rng(0)
    first = synthetic_runs()[(1, 1)]["spatial"].video_ids[0]
    examples = {str(first): (rng.integers(0, 255, (72, 96, 3), dtype=np.uint8),
                             rng.integers(0, 30, (72, 96), dtype=np.uint8))}
    gate = {"moving": 3.9, "background": 1.06, "grid_moving": 3.7, "grid_background": 1.0, "frames": 12, "grid": 13}
    mechanism = {"losses": {"spatial": [1.5, 1.7], "temporal": [0.9, 1.1]}, "gate": gate, "gate_note": ""}
    timings = {"dataset": 6.0, "data": 300.0, "pretrain": 120.0, "split1/seed1/spatial": 60.0,
               "split1/seed2/spatial": 60.0, "split1/seed1/test_spatial": 30.0, "split1/seed1/test_temporal": 30.0,
               "split1/seed1/init_spatial": 1.0, "report": 3.0}
    results = write_report(tmp_path / "results", about(splits=[1]), synthetic_runs(), SYNTHETIC_CLASSES, examples, [],
                           mechanism, timings)
    text = results.read_text()
    for line in ("## Mechanism check", "| S | 100.0 ± 0.0 | 37.5 | 267% |", "| S | 1.60 ± 0.14 |",
                 "| frames (12 test flow images) | 3.90 | 1.06 | 3.68 |",
                 "| 13x13 conv5 grid (centre crop) | 3.70 | 1.00 | 3.70 |",
                 "| train spatial | 2.0 |", "| test (every net) | 1.0 |", "| pretrain | 2.0 |", "| total | 10.2 |"):
        assert line in text, line
    binding = [line for line in text.splitlines() if line.startswith("| RedSwing / BlueSwing")]
    assert binding, text
    data = json.loads((tmp_path / "results" / "results.json").read_text())
    assert data["mechanism"]["gate"] == gate and data["timings"] == timings
    unmeasured = write_report(tmp_path / "other", about(splits=[1]), synthetic_runs(), SYNTHETIC_CLASSES, examples, [],
                              {**mechanism, "gate": None, "gate_note": "the frames were resized"})
    assert "Not measured: the frames were resized." in unmeasured.read_text()
    assert "## Mechanism check" not in write_report(tmp_path / "plain", about(splits=[1]), synthetic_runs(),
                                                    SYNTHETIC_CLASSES, examples, []).read_text()


def test_mean_std_loss_and_timing_tables():
    assert mean_std([1.0, 3.0]) == "2.0 ± 1.4" and mean_std([2.0], 2) == "2.00"
    assert loss_lines({"temporal": [0.5]}, 8)[2].startswith("| T | 0.50 | 2.08 |")
    assert timing_lines({"split2/seed3/mfuse_fc7": 120.0, "split2/seed3/heldout_spatial": 60.0})[2:] == [
        "| train mfuse_fc7 | 2.0 |", "| test (every net) | 1.0 |", "| total | 3.0 |"]
