"""The demo's report: a table shaped like the paper's Tables 1-3 over seeds, an honest summary, pictures.

It takes plain data (score sets per seed, class names, example images, training-log paths and a JSON-able
``about`` dict saying what the run was) and knows nothing of how they were made, so any driver can use it.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mfuse.evaluation import ScoreSet, evaluate, per_class_accuracy
from mfuse.fileio import write_atomic
from mfuse.reports.plots import (AmplificationExample, FusionExample, plot_amplification_examples,
                                 plot_confusion, plot_fusion_examples, plot_per_class_accuracy,
                                 plot_training_curves)
from mfuse.reports.tables import Result, TableSpec, build_table, write_table
from mfuse.reports.train_log import read_train_log
from mfuse.synthetic import ceiling, loss_floor
from mfuse.demo.mechanism import pair_accuracies

#: Row labels of the table, by score-set name (nets and late fusions).
ROWS = {"spatial": "S", "spatial_amp": "S (amp)", "temporal": "T", "baseline_a": "baseline A",
        "baseline_b": "baseline B", "mfuse_conv5": "m-fusion (conv5)", "mfuse_fc7": "m-fusion (fc7)",
        "S+T": "S + T", "Samp+T": "S (amp) + T", "final_conv5": "S (amp) + T + m-fusion (conv5)",
        "final_fc7": "S (amp) + T + m-fusion (fc7)"}
COLUMN = "synthetic"
#: The comparisons the paper makes, as (claim, base row, improved row).
CLAIMS = (("feature amplification (Table 1)", "spatial", "spatial_amp"),
          ("amplification inside late fusion (Table 1)", "S+T", "Samp+T"),
          ("m-fusion conv5 vs baseline A (Table 2)", "baseline_a", "mfuse_conv5"),
          ("m-fusion conv5 vs late averaging S+T", "S+T", "mfuse_conv5"),
          ("m-fusion fc7 vs late averaging S+T", "S+T", "mfuse_fc7"),
          ("final 2:3:4 fusion vs S (amp) + T (Table 3)", "Samp+T", "final_conv5"))
NUM_EXAMPLES = 4
#: Rows with a designed ceiling: row name -> model kind of ``mfuse.synthetic.SEPARABLE``.
CEILING_KINDS = {"spatial": "spatial", "temporal": "temporal", "spatial_amp": "spatial_amp", "S+T": "S+T",
                 "Samp+T": "Samp+T", "mfuse_conv5": "fusion", "mfuse_fc7": "fusion"}
#: Nets whose final training loss is set against chance and the designed floor: net -> model kind.
LOSS_KINDS = {"spatial": "spatial", "spatial_amp": "spatial_amp", "temporal": "temporal", "baseline_a": "fusion",
              "baseline_b": "fusion", "mfuse_conv5": "fusion", "mfuse_fc7": "fusion"}
#: The late and multiplicative fusions compared on the binding pairs.
BINDING_ROWS = ("S+T", "Samp+T", "mfuse_conv5", "mfuse_fc7")


def synthetic_table_spec(split: int) -> TableSpec:
    return TableSpec("synthetic", f"Synthetic action dataset, split {split}: top-1 accuracy (%)",
                     tuple(ROWS.values()), (COLUMN,), splits=(split,))


def accuracies(per_seed: Mapping[int, Mapping[str, ScoreSet]]) -> dict[str, list[float]]:
    """Top-1 accuracy of every row name over the seeds."""
    table: dict[str, list[float]] = {}
    for scores in per_seed.values():
        for name, score_set in scores.items():
            table.setdefault(name, []).append(evaluate(score_set).accuracy)
    return table


def class_accuracies(scores: Mapping[str, ScoreSet], names: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-class accuracy of the named score sets (for the bar plot)."""
    return {ROWS[name]: per_class_accuracy(evaluate(scores[name]).confusion) for name in names}


def claim_lines(acc: Mapping[str, list[float]]) -> list[str]:
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


def _mean_std(values: Sequence[float]) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.1f} ± {values.std(ddof=1):.1f}" if len(values) > 1 else f"{values.mean():.1f}"


def ceiling_lines(acc: Mapping[str, list[float]]) -> list[str]:
    """A table: accuracy against the ceiling the dataset was designed with, per model kind."""
    lines = ["| model | accuracy (%) | designed ceiling (%) | share of the ceiling |", "|---|---|---|---|"]
    for row, kind in CEILING_KINDS.items():
        values = 100 * np.asarray(acc[row])
        lines.append(f"| {ROWS[row]} | {_mean_std(values)} | {100 * ceiling(kind):.1f} | "
                     f"{values.mean() / (100 * ceiling(kind)):.0%} |")
    return lines


def loss_lines(losses: Mapping[str, Sequence[float]], num_classes: int) -> list[str]:
    """A table: final training loss (mean over seeds) against chance and the designed floor."""
    lines = [f"| net | final training loss | chance (ln {num_classes}) | designed floor |", "|---|---|---|---|"]
    for net, kind in LOSS_KINDS.items():
        if net in losses:
            lines.append(f"| {ROWS[net]} | {np.mean(losses[net]):.2f} | {np.log(num_classes):.2f} | "
                         f"{loss_floor(kind):.2f} |")
    return lines


def binding_lines(per_seed: Mapping[int, Mapping[str, ScoreSet]], classes: Sequence[str]) -> list[str]:
    """A table: per-class accuracy (%, mean over seeds) on the binding pairs, late vs multiplicative fusion."""
    per_class = {ROWS[name]: 100 * np.mean([per_class_accuracy(evaluate(scores[name]).confusion)
                                            for scores in per_seed.values()], axis=0) for name in BINDING_ROWS}
    lines = ["| binding pair | " + " | ".join(per_class) + " |", "|---|" + "---|" * len(per_class)]
    for a, b, values in pair_accuracies(per_class, classes):
        lines.append(f"| {a} / {b} | " + " | ".join(f"{va:.0f} / {vb:.0f}" for va, vb in values.values()) + " |")
    return lines


def gate_lines(gate: Mapping[str, float]) -> list[str]:
    """A table: the amplification gate on moving discs vs background (``mechanism.GateContrast`` fields)."""
    grid = gate["grid"]
    return ["| where | mean gate on moving discs | mean gate on the background | contrast |", "|---|---|---|---|",
            f"| frames ({gate['frames']} test flow images) | {gate['moving']:.2f} | {gate['background']:.2f} | "
            f"{gate['moving'] / gate['background']:.2f} |",
            f"| {grid}x{grid} conv5 grid (centre crop) | {gate['grid_moving']:.2f} | {gate['grid_background']:.2f} | "
            f"{gate['grid_moving'] / gate['grid_background']:.2f} |"]


def timing_lines(timings: Mapping[str, float]) -> list[str]:
    """A table: minutes per stage when it ran, the seeds' stages summed (``seed<k>/train/<net>``,
    ``seed<k>/test/<net>``)."""
    totals: dict[str, float] = {}
    for stage, seconds in timings.items():
        parts = stage.split("/")
        if parts[0].startswith("seed") and len(parts) == 3:
            stage = f"train {parts[2]}" if parts[1] == "train" else "test (every net)"
        totals[stage] = totals.get(stage, 0.0) + seconds
    lines = ["| stage | minutes (all seeds) |", "|---|---|"]
    lines += [f"| {stage} | {seconds / 60:.1f} |" for stage, seconds in totals.items()]
    return lines + [f"| total | {sum(totals.values()) / 60:.1f} |"]


def mechanism_lines(per_seed: Mapping[int, Mapping[str, ScoreSet]], classes: Sequence[str],
                    acc: Mapping[str, list[float]], mechanism: Mapping) -> list[str]:
    """The report's mechanism section (``mechanism``: ``gate``, ``losses``; see :func:`write_report`)."""
    return ["## Mechanism check", "",
            "Accuracy against what a perfect model of each kind reaches on this data (by design, "
            "`mfuse.synthetic.SEPARABLE`):", "", *ceiling_lines(acc), "",
            "Training loss (smoothed, last displayed iterations, mean over seeds) against chance and against the "
            "lowest loss a perfect model of the kind reaches:", "", *loss_lines(mechanism["losses"], len(classes)),
            "", "The amplification gate `1 + magnitude` on the test videos, from the generator's disc masks (moving "
            "discs vs pixels with no disc):", "", *gate_lines(mechanism["gate"]), "",
            "Per-class accuracy (%) on the binding pairs (same discs, same motions, only which disc does what "
            "differs), mean over seeds:", "", *binding_lines(per_seed, classes), ""]


def example_videos(scores: ScoreSet, count: int = NUM_EXAMPLES) -> list[str]:
    """Up to ``count`` video ids spread over the sorted ids of ``scores`` (the Figure 3/4 examples)."""
    order = np.argsort([v for v in scores.video_ids])[:: max(1, len(scores) // count)][:count]
    return [str(scores.video_ids[i]) for i in order]


def write_pictures(scores: Mapping[str, ScoreSet], classes: Sequence[str],
                   examples: Mapping[str, tuple[np.ndarray, np.ndarray]], logs: Sequence[Path], seed: int,
                   out: Path) -> list[Path]:
    """Confusion matrix, per-class bars, training curves (one per log) and Figure 3/4-style examples
    (``examples``: ``{video_id: (BGR frame, magnitude map)}``) of one seed's ``scores``."""
    paths = [plot_confusion(evaluate(scores["final_conv5"]).confusion, classes, out / "confusion_final_conv5.png",
                            title=f"{ROWS['final_conv5']} (seed {seed})"),
             plot_per_class_accuracy(class_accuracies(scores, ("spatial", "spatial_amp", "temporal", "S+T",
                                                               "mfuse_conv5", "final_conv5")),
                                     classes, out / "per_class_accuracy.png")]
    for log in logs:
        paths.append(plot_training_curves(read_train_log(log), out / f"curves_{log.stem}.png",
                                          title=f"{log.stem} (seed {seed})"))
    row = {str(video_id): i for i, video_id in enumerate(scores["spatial"].video_ids)}
    amp_examples, fusion_examples = [], []
    for video_id, (frame, magnitude) in examples.items():
        i = row[video_id]
        label = int(scores["spatial"].labels[i])
        amp_examples.append(AmplificationExample(frame, magnitude, label, scores["spatial"].scores[i],
                                                 scores["spatial_amp"].scores[i], gate=1.0 + magnitude))
        fusion_examples.append(FusionExample(frame, label, {"spatial": scores["spatial"].scores[i],
                                                            "temporal": scores["temporal"].scores[i],
                                                            "m-fusion": scores["mfuse_conv5"].scores[i]}))
    paths.append(plot_amplification_examples(amp_examples, classes, out / "figure3_amplification.png"))
    paths.append(plot_fusion_examples(fusion_examples, classes, out / "figure4_fusion.png"))
    return paths


def write_report(out: Path, about: dict, per_seed: Mapping[int, Mapping[str, ScoreSet]], classes: Sequence[str],
                 examples: Mapping[str, tuple[np.ndarray, np.ndarray]], logs: Sequence[Path],
                 mechanism: Mapping | None = None) -> Path:
    """Writes the table (md/csv), ``results.json``, pictures and ``results.md`` into ``out``; returns results.md.

    Args:
        out: the results folder.
        about: what the run was (JSON-able): ``dataset``, ``config``, ``seeds``, ``split``, ``flow``,
            ``protocol``, ``max_iter`` (None unless the solvers were shortened), ``nets``.
        per_seed: ``{seed: {name: ScoreSet}}``, names among ``ROWS``.
        classes: class names in label order.
        examples, logs: the first seed's example images and training logs (see :func:`write_pictures`).
        mechanism: the measurements of the mechanism check on the synthetic set, or None: ``gate`` (the
            fields of ``mfuse.synthetic.mechanism.GateContrast`` and ``grid``), ``losses`` (``{net: final
            training loss per seed}``), ``timings`` (``{stage: seconds}``).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    split = about["split"]
    results = [Result(ROWS[name], COLUMN, split, evaluate(score_set).accuracy, seed,
                      evaluate(score_set).mean_class_accuracy)
               for seed, scores in per_seed.items() for name, score_set in scores.items()]
    table = build_table(synthetic_table_spec(split), results)
    write_table(table, out)
    acc = accuracies(per_seed)
    first_seed = min(per_seed)
    pictures = write_pictures(per_seed[first_seed], classes, examples, logs, first_seed, out)
    num_test = len(next(iter(per_seed[first_seed].values())))
    write_atomic(out / "results.json", json.dumps({"about": about, "accuracy": acc, "mechanism": mechanism},
                                                  indent=2))
    max_iter = about["max_iter"]
    lines = ["# mfuse demo results", "",
             f"What this is: the paper's pipeline on SYNTHETIC data ({about['dataset']}; {about['config']}), the "
             f"tiny backbone (not CNN-M/VGG19; pretrained on a synthetic image task as the stand-in for ImageNet), "
             f"split {split} ({num_test} test videos), {about['flow']} flow"
             + (f" ({about['flow_subtract']} flow subtracted)" if "flow_subtract" in about else "")
             + f", {about['protocol']}, seeds {about['seeds']}"
             + (f", every solver shortened to {max_iter} iterations (quick mode)" if max_iter else "")
             + ". The numbers say whether the pipeline works and how the methods compare on data designed to "
               "need both streams; they are not UCF101/HMDB51 results.", "",
             table.to_markdown(), "## The paper's claims on this data", *claim_lines(acc), "",
             *(mechanism_lines(per_seed, classes, acc, mechanism) if mechanism else []),
             "## Pictures", *[f"- `{p.name}`" for p in pictures], "",
             *(["## Time per stage", "", *timing_lines(mechanism["timings"]), ""]
               if mechanism and mechanism.get("timings") else [])]
    return write_atomic(out / "results.md", "\n".join(lines))
