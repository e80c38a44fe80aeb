"""Wall time of every stage of a finished recipe run (``tools/reproduce.py``), from its provenance records, as
benchmark records that ``mfuse.recipe.estimates`` reads for the plans of later runs.

    .venv/bin/python benchmarks/recipe_stage_times.py runs/demo --device "2-core Debian 12, shared" \\
        --write benchmarks/results/<date>-cpu-tiny-recipe-stages.json

Per training stage: seconds per iteration at the schedule's batch (startup included, the data layer included:
what a real run takes; the pretraining stand-in's images included); per test stage: seconds per video of the
run's protocol; the data preparation: core seconds per frame at the run's frame size and flow algorithm. One record per stage of the first split and seed
that ran it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from caffe.proto import caffe_pb2
from google.protobuf import text_format

from mfuse.conventions import NET_NAMES
from mfuse.evaluation import load_scores
from mfuse.training import read_solver


def records(run: Path, device: str) -> list[dict]:
    experiment = json.loads((run / "experiment.json").read_text())
    backbone = experiment["model"]["backbone"]
    mode = "gpu" if experiment["train"]["gpus"] else "cpu"
    test = experiment["test"]
    found, seen = [], set()
    data = json.loads((run / "provenance" / "data.json").read_text()) if (run / "provenance" / "data.json").is_file() \
        else None
    if data is not None and data["seconds"] > 0:
        root = Path(next(k for k in data["outputs"] if k.endswith("heldout.json"))).parent
        summary = json.loads((root / "summary.json").read_text())
        meta = json.loads(next((root / "frames").rglob("meta.json")).read_text())
        workers = experiment["data"]["workers"]
        found.append({"bench": "recipe_stage", "mode": "cpu", "backbone": backbone, "device": device,
                      "run": str(run), "stage": "data", "kind": "data", "name": "data",
                      "algorithm": data["settings"]["extract"]["flow_algorithm"],
                      "frame_size": [meta["width"], meta["height"]], "frames": summary["frames"],
                      "workers": workers, "seconds": data["seconds"],
                      "core_s_per_frame": data["seconds"] * workers / summary["frames"]})
    pretrain = run / "provenance" / "pretrain.json"
    if pretrain.is_file() and json.loads(pretrain.read_text())["seconds"] > 0:
        record = json.loads(pretrain.read_text())
        schedule = record["settings"]["config"]["schedule"]
        found.append({"bench": "recipe_stage", "mode": "cpu", "backbone": backbone, "device": device,
                      "run": str(run), "stage": "pretrain", "kind": "train", "name": "pretrain",
                      "iterations": schedule["max_iter"], "samples_per_iteration": schedule["batch"],
                      "seconds": record["seconds"], "s_per_iteration": record["seconds"] / schedule["max_iter"]})
    for path in sorted((run / "provenance").glob("split*/seed*/*.json")):
        record = json.loads(path.read_text())
        name = path.stem
        if name in seen or record["seconds"] <= 0:
            continue
        base = {"bench": "recipe_stage", "mode": mode, "backbone": backbone, "device": device,
                "run": str(run), "stage": record["stage"]}
        if name in NET_NAMES:
            solver = read_solver(next(k for k in record["inputs"] if k.endswith("_solver.prototxt")))
            train_val = caffe_pb2.NetParameter()
            text_format.Merge(Path(next(k for k in record["inputs"] if k.endswith("_train_val.prototxt"))).read_text(),
                              train_val)
            batch = json.loads(train_val.layer[0].python_param.param_str)["batch_size"]
            found.append({**base, "kind": "train", "name": name, "iterations": solver.max_iter,
                          "samples_per_iteration": batch * solver.iter_size, "seconds": record["seconds"],
                          "s_per_iteration": record["seconds"] / solver.max_iter})
        elif name.startswith("test_"):
            videos = len(load_scores(next(iter(record["outputs"]))))
            found.append({**base, "kind": "test", "name": name[len("test_"):], "videos": videos,
                          "frames": test["frames"], "crops": test["crops"], "seconds": record["seconds"],
                          "s_per_video": record["seconds"] / videos})
        else:
            continue
        seen.add(name)
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished run folder of tools/reproduce.py")
    parser.add_argument("--device", required=True, help="what the run ran on (written into every record)")
    parser.add_argument("--write", type=Path, help="JSON file to write (default: print)")
    args = parser.parse_args(argv)
    text = json.dumps({"records": records(args.run, args.device)}, indent=1)
    if args.write:
        args.write.write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
