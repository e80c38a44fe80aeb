"""The demo's report from plain data: the table over seeds, the claims against the spread, results.json and
the pictures."""
import json

import numpy as np
import pytest

from mfuse.demo.report import CLAIMS, ROWS, claim_lines, example_videos, write_report
from mfuse.evaluation.scores import ScoreSet

CLASSES = ["Left", "Right", "Up"]
VIDEO_IDS = np.array([f"{c}/v_{i}" for i, c in enumerate(["Up", "Left", "Right", "Left", "Up", "Right"])])
LABELS = np.array([2, 0, 1, 0, 2, 1])
LOG = """\
I1123 09:12:09.600000 41811 solver.cpp:347] Iteration 0, Testing net (#0)
I1123 09:12:12.000000 41811 solver.cpp:414]     Test net output #0: accuracy = 0.25
I1123 09:12:12.700000 41811 solver.cpp:239] Iteration 0 (0 iter/s, 3.1s/20 iters), loss = 1.1
I1123 09:12:12.700200 41811 sgd_solver.cpp:112] Iteration 0, lr = 0.01
I1123 09:12:20.100000 41811 solver.cpp:239] Iteration 20 (2.7 iter/s, 7.4s/20 iters), loss = 0.9
I1123 09:12:20.100200 41811 sgd_solver.cpp:112] Iteration 20, lr = 0.01
"""


def score_set(correct: int, seed: int) -> ScoreSet:
    """Scores whose first ``correct`` videos are right, the others wrong."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0, 0.2, (len(LABELS), len(CLASSES)))
    for i, label in enumerate(LABELS):
        scores[i, label if i < correct else (label + 1) % 3] += 1.0
    return ScoreSet(VIDEO_IDS, LABELS, scores.astype(np.float32), {"split": 1, "subset": "test"})


def per_seed(seeds=(1, 2)):
    # amplification and m-fusion are right more often than their bases; S+T and baseline A equal S.
    correct = {"spatial": 2, "spatial_amp": 4, "temporal": 3, "baseline_a": 2, "baseline_b": 3, "mfuse_conv5": 5,
               "mfuse_fc7": 4, "S+T": 2, "Samp+T": 4, "final_conv5": 6, "final_fc7": 5}
    return {seed: {name: score_set(correct[name] + (seed == 2 and name == "spatial"), seed) for name in ROWS}
            for seed in seeds}


def about(max_iter=6):
    return {"dataset": "synthetic (test)", "config": {"num_groups": 4}, "seeds": [1, 2], "split": 1, "flow": "dis",
            "protocol": "3 frames x ten crops", "max_iter": max_iter, "nets": ["spatial"]}


def test_write_report_from_plain_data(tmp_path):
    log = tmp_path / "logs" / "spatial.log"
    log.parent.mkdir()
    log.write_text(LOG)
    rng = np.random.default_rng(0)
    examples = {video_id: (rng.integers(0, 255, (48, 64, 3), dtype=np.uint8),
                           rng.integers(0, 30, (48, 64), dtype=np.uint8)) for video_id in VIDEO_IDS[:2]}
    results = write_report(tmp_path / "results", about(), per_seed(), CLASSES, examples, [log])
    text = results.read_text()
    assert results == tmp_path / "results" / "results.md"
    assert "SYNTHETIC" in text and "split 1 (6 test videos), dis flow, 3 frames x ten crops, seeds [1, 2]" in text
    assert "every solver shortened to 6 iterations (quick mode)" in text
    for row in ROWS.values():
        assert f"| {row} |" in text
    assert len([line for line in text.splitlines() if line.startswith("- ") and "points (" in line]) == len(CLAIMS)
    accuracy = json.loads((results.parent / "results.json").read_text())
    assert accuracy["about"] == about() and accuracy["accuracy"]["spatial"] == pytest.approx([2 / 6, 3 / 6])
    assert accuracy["accuracy"]["final_conv5"] == [1.0, 1.0]
    for name in ("synthetic.md", "synthetic.csv", "confusion_final_conv5.png", "per_class_accuracy.png",
                 "curves_spatial.png", "figure3_amplification.png", "figure4_fusion.png"):
        assert (results.parent / name).stat().st_size > 100, name
    assert "quick mode" not in write_report(tmp_path / "full", about(None), per_seed(), CLASSES, examples,
                                            []).read_text()


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
