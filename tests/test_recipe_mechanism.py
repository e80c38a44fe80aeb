"""mfuse.recipe.mechanism: final training losses from Caffe logs, the gate's measurement (or why not), stage
seconds from the provenance records."""
import json
import os

import pytest

from mfuse.recipe.mechanism import final_losses, gate_measurement, stage_seconds
from mfuse.recipe.provenance import RECORD_VERSION

LOG = "".join(f"I1123 09:12:{10 + i:02d}.700000 41811 solver.cpp:239] Iteration {20 * i} (2.7 iter/s, 7.4s/20 "
              f"iters), loss = {value}\n" for i, value in enumerate([2.0, 1.5, 1.0, 0.8, 0.6, 0.4, 0.2]))


def test_final_losses_average_the_last_displays_per_log(tmp_path):
    (tmp_path / "a.log").write_text(LOG)
    (tmp_path / "empty.log").write_text("no iterations\n")
    losses = final_losses([("spatial", tmp_path / "a.log"), ("spatial", tmp_path / "a.log"),
                           ("temporal", tmp_path / "missing.log"), ("temporal", tmp_path / "empty.log")], last=2)
    assert losses == {"spatial": [pytest.approx(0.3), pytest.approx(0.3)]}


def test_the_gate_is_not_measured_on_resized_frames(tmp_path):
    gate, note = gate_measurement(tmp_path, tmp_path, 1, "lmdb", "tiny", at_video_size=False)
    assert gate is None and "resized" in note


def test_stage_seconds_in_the_order_the_stages_finished(tmp_path):
    for i, (stage, seconds) in enumerate([("data", 5.0), ("split1/seed1/spatial", 2.5), ("pretrain", 1.0)]):
        path = tmp_path / f"{stage}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"version": RECORD_VERSION, "stage": stage, "seconds": seconds}))
        os.utime(path, ns=(10**18 + i, 10**18 + i))
    (tmp_path / "hashes.json").write_text(json.dumps({"x": [1, 2, 3]}))
    (tmp_path / "broken.json").write_text("{")
    assert list(stage_seconds(tmp_path).items()) == [("data", 5.0), ("split1/seed1/spatial", 2.5), ("pretrain", 1.0)]
