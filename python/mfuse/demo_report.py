"""The demo's report: a table shaped like the paper's Tables 1-3 over seeds, an honest summary, pictures."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mfuse.demo import COLUMN, ROWS, DemoConfig, accuracies, class_accuracies, describe
from mfuse.evaluation import ScoreSet, evaluate
from mfuse.prep.lmdb_store import open_frame_store
from mfuse.reports.plots import (AmplificationExample, FusionExample, plot_amplification_examples,
                                 plot_confusion, plot_fusion_examples, plot_per_class_accuracy,
                                 plot_training_curves)
from mfuse.reports.tables import Result, TableSpec, build_table, write_table
from mfuse.reports.train_log import read_train_log

#: The comparisons the paper makes, as (claim, base row, improved row).
CLAIMS = (("feature amplification (Table 1)", "spatial", "spatial_amp"),
          ("amplification inside late fusion (Table 1)", "S+T", "Samp+T"),
          ("m-fusion conv5 vs baseline A (Table 2)", "baseline_a", "mfuse_conv5"),
          ("m-fusion conv5 vs late averaging S+T", "S+T", "mfuse_conv5"),
          ("m-fusion fc7 vs late averaging S+T", "S+T", "mfuse_fc7"),
          ("final 2:3:4 fusion vs S (amp) + T (Table 3)", "Samp+T", "final_conv5"))


def synthetic_table_spec(split: int) -> TableSpec:
    return TableSpec("synthetic", f"Synthetic action dataset, split {split}: top-1 accuracy (%)",
                     tuple(ROWS.values()), (COLUMN,), splits=(split,))


def claim_lines(acc: dict[str, list[float]]) -> list[str]:
    """One sentence per paper claim: the measured difference and whether it exceeds the seeds' spread."""
    lines = []
    for claim, base, improved in CLAIMS:
        a, b = np.asarray(acc[base]) * 100, np.asarray(acc[improved]) * 100
        diff = b.mean() - a.mean()
        spread = max(a.std(ddof=1), b.std(ddof=1)) if len(a) > 1 else float("nan")
        if np.isnan(spread):
            verdict = "one seed only: no spread, nothing claimed"
        elif abs(diff) > spread:
            verdict = "larger than the spread over seeds: " + ("supports the paper" if diff > 0 else
                                                                "contradicts the paper on this data")
        else:
            verdict = "within the spread over seeds: no difference claimed"
        lines.append(f"- {claim}: {ROWS[improved]} − {ROWS[base]} = {diff:+.1f} points ({verdict}).")
    return lines


def write_pictures(config: DemoConfig, data_root: Path, scores: dict[str, ScoreSet], seed: int,
                   out: Path) -> list[Path]:
    """Confusion matrix, per-class bars, training curves and Figure 3/4-style examples of one seed."""
    rgb = open_frame_store(data_root, config.split, "test", "rgb")
    mag = open_frame_store(data_root, config.split, "test", "mag")
    classes = rgb.index.classes
    paths = [plot_confusion(evaluate(scores["final_conv5"]).confusion, classes, out / "confusion_final_conv5.png",
                            title=f"{ROWS['final_conv5']} (seed {seed})"),
             plot_per_class_accuracy(class_accuracies(scores, ("spatial", "spatial_amp", "temporal", "S+T",
                                                               "mfuse_conv5", "final_conv5")),
                                     classes, out / "per_class_accuracy.png")]
    for log in sorted((config.out / f"seed{seed}" / "logs").glob("*.log")):
        paths.append(plot_training_curves(read_train_log(log), out / f"curves_{log.stem}.png",
                                          title=f"{log.stem} (seed {seed})"))
    order = np.argsort([v for v in scores["spatial"].video_ids])[:: max(1, len(scores["spatial"]) // 4)][:4]
    amp_examples, fusion_examples = [], []
    for i in order:
        video_id, label = str(scores["spatial"].video_ids[i]), int(scores["spatial"].labels[i])
        t = max(1, mag.num_frames(video_id) // 2)
        frame, magnitude = rgb.get_image(video_id, t), mag.get_image(video_id, t)
        amp_examples.append(AmplificationExample(frame, magnitude, label, scores["spatial"].scores[i],
                                                 scores["spatial_amp"].scores[i], gate=1.0 + magnitude))
        fusion_examples.append(FusionExample(frame, label, {"spatial": scores["spatial"].scores[i],
                                                            "temporal": scores["temporal"].scores[i],
                                                            "m-fusion": scores["mfuse_conv5"].scores[i]}))
    paths.append(plot_amplification_examples(amp_examples, classes, out / "figure3_amplification.png"))
    paths.append(plot_fusion_examples(fusion_examples, classes, out / "figure4_fusion.png"))
    return paths


def write_report(config: DemoConfig, data_root: Path, per_seed: dict[int, dict[str, ScoreSet]]) -> Path:
    """Writes ``results/`` (table md/csv, results.json, pictures, results.md); returns results.md."""
    out = config.out / "results"
    out.mkdir(parents=True, exist_ok=True)
    results = [Result(ROWS[name], COLUMN, config.split, evaluate(score_set).accuracy, seed,
                      evaluate(score_set).mean_class_accuracy)
               for seed, scores in per_seed.items() for name, score_set in scores.items()]
    table = build_table(synthetic_table_spec(config.split), results)
    write_table(table, out)
    acc = accuracies(per_seed)
    first_seed = min(per_seed)
    pictures = write_pictures(config, data_root, per_seed[first_seed], first_seed, out)
    about = describe(config)
    num_test = len(next(iter(per_seed[first_seed].values())))
    (out / "results.json").write_text(json.dumps({"about": about, "accuracy": acc}, indent=2))
    lines = ["# mfuse demo results", "",
             f"What this is: the paper's pipeline on SYNTHETIC data ({about['dataset']}; {about['config']}), the "
             f"tiny backbone (not CNN-M/VGG19, no ImageNet initialisation), split {config.split} "
             f"({num_test} test videos), {about['flow']} flow, {about['protocol']}, seeds {about['seeds']}"
             + (f", every solver shortened to {config.max_iter} iterations (quick mode)" if config.max_iter else "")
             + ". The numbers say whether the pipeline works and how the methods compare on data designed to "
               "need both streams; they are not UCF101/HMDB51 results.", "",
             table.to_markdown(), "## The paper's claims on this data", *claim_lines(acc), "",
             "## Pictures", *[f"- `{p.name}`" for p in pictures], ""]
    path = out / "results.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
