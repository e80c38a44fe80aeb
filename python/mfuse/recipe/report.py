"""The run's report: Tables 1-3 per split and over the splits (the paper's numbers alongside where the run is
comparable), the paper's claims against the spread over seeds, and the pictures.

It takes plain data (score sets per split and seed, class names, example images, training-log paths, a
JSON-able ``about`` dict saying what the run was and, for the synthetic set, the mechanism check's
measurements) and knows nothing of how they were made.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mfuse.conventions import SPLITS
from mfuse.evaluation import ScoreSet, evaluate, per_class_accuracy
from mfuse.evaluation.mechanism import pair_accuracies
from mfuse.fileio import write_atomic
from mfuse.reports.plots import (AmplificationExample, FusionExample, plot_amplification_examples, plot_confusion,
                                 plot_fusion_examples, plot_per_class_accuracy, plot_training_curves)
from mfuse.reports.tables import PAPER_TABLES, Result, Table, TableSpec, build_table, write_table
from mfuse.reports.train_log import read_train_log
from mfuse.synthetic import ceiling, loss_floor

#: Row labels, by score-set name (nets and late fusions).
ROWS = {"spatial": "S", "spatial_amp": "S (amp)", "temporal": "T", "baseline_a": "baseline A",
        "baseline_b": "baseline B", "mfuse_conv5": "m-fusion (conv5)", "mfuse_fc7": "m-fusion (fc7)",
        "S+T": "S + T", "Samp+T": "S (amp) + T", "final_conv5": "S (amp) + T + m-fusion (conv5)",
        "final_fc7": "S (amp) + T + m-fusion (fc7)",
        "searched_conv5": "S (amp) + T + m-fusion (conv5), searched weights",
        "searched_fc7": "S (amp) + T + m-fusion (fc7), searched weights"}
#: Where each score set goes: (table, row, column); ``None`` column = the table's one column.
CELLS = {"spatial": ("table1", "S", "base"), "spatial_amp": ("table1", "S", "amp"),
         "temporal": ("table1", "T", "base"), "S+T": ("table1", "S + T", "base"),
         "Samp+T": ("table1", "S + T", "amp"),
         **{name: ("table2", ROWS[name], None) for name in ("baseline_a", "baseline_b", "mfuse_conv5", "mfuse_fc7")},
         **{name: ("table3", ROWS[name], None) for name in ("final_conv5", "final_fc7", "searched_conv5",
                                                             "searched_fc7")}}
#: The comparisons the paper makes, as (claim, base score set, improved score set).
CLAIMS = (("feature amplification (Table 1)", "spatial", "spatial_amp"),
          ("amplification inside late fusion (Table 1)", "S+T", "Samp+T"),
          ("m-fusion conv5 vs baseline A (Table 2)", "baseline_a", "mfuse_conv5"),
          ("m-fusion conv5 vs late averaging S+T", "S+T", "mfuse_conv5"),
          ("m-fusion fc7 vs late averaging S+T", "S+T", "mfuse_fc7"),
          ("final 2:3:4 fusion vs S (amp) + T (Table 3)", "Samp+T", "final_conv5"))
#: The paper's datasets (their class counts) and backbones (their Table 2 column names).
PAPER_DATASETS = {"ucf101": ("UCF101", 101), "hmdb51": ("HMDB51", 51)}
PAPER_BACKBONES = {"cnn_m_2048": ("CNN-M", "basic"), "vgg19": ("VGG19", "VGG19")}
NUM_EXAMPLES = 4
#: Score sets with a designed ceiling on the synthetic set: name -> model kind of ``mfuse.synthetic.SEPARABLE``.
CEILING_KINDS = {"spatial": "spatial", "temporal": "temporal", "spatial_amp": "spatial_amp", "S+T": "S+T",
                 "Samp+T": "Samp+T", "mfuse_conv5": "fusion", "mfuse_fc7": "fusion"}
#: Nets whose final training loss is set against chance and the designed floor: net -> model kind.
LOSS_KINDS = {"spatial": "spatial", "spatial_amp": "spatial_amp", "temporal": "temporal", "baseline_a": "fusion",
              "baseline_b": "fusion", "mfuse_conv5": "fusion", "mfuse_fc7": "fusion"}
#: The late and multiplicative fusions compared on the binding pairs.
BINDING_ROWS = ("S+T", "Samp+T", "mfuse_conv5", "mfuse_fc7")

Runs = Mapping[tuple[int, int], Mapping[str, ScoreSet]]   # {(split, seed): {score-set name: scores}}


def paper_dataset(about: Mapping, num_classes: int) -> str | None:
    """The paper's column for this run: its dataset when the format and class count are the paper's, and the
    backbone is one of the paper's; otherwise None (no paper numbers shown)."""
    known = PAPER_DATASETS.get(about["format"])
    if known is None or known[1] != num_classes or about["backbone"] not in PAPER_BACKBONES:
        return None
    return known[0]


def table_specs(about: Mapping, num_classes: int) -> dict[str, TableSpec]:
    """Tables 1-3 for this run's dataset and backbone, with the paper's numbers and split protocol (3-split means,
    Table 2 on split 1) when comparable; otherwise every cell averages the run's splits."""
    dataset = paper_dataset(about, num_classes)
    backbone = about["backbone"]
    spatial_row, column2 = PAPER_BACKBONES.get(backbone, (backbone, backbone))
    label = dataset or f"{about['format']} ({num_classes} classes)"
    t1, t2, t3 = (PAPER_TABLES[n] for n in ("table1", "table2", "table3"))
    paper1 = paper2 = paper3 = {}
    # Off the paper's datasets its split protocol means nothing: a cell is an average over the run's splits.
    splits = {name: (spec.splits if dataset else tuple(about["splits"])) for name, spec in
              (("table1", t1), ("table2", t2), ("table3", t3))}
    if dataset:
        st = "S (VGG19) + T" if backbone == "vgg19" else "S + T"
        rows1 = {"S": f"S ({spatial_row})", "T": "T", "S + T": st}
        paper1 = {(row, col): t1.paper[(rows1[row], f"{dataset} {col}")] for row in rows1 for col in ("base", "amp")
                  if (rows1[row], f"{dataset} {col}") in t1.paper}
        paper2 = {(row, column2): t2.paper[(row, f"{dataset} {column2}")] for row in t2.rows}
        paper3 = {(row, column2): t3.paper[(row, dataset)] for row in t3.rows}
    return {
        "table1": TableSpec("table1", f"Table 1: feature amplification, {label}, {backbone} (top-1 %)",
                            ("S", "T", "S + T"), ("base", "amp"), splits["table1"], paper1),
        "table2": TableSpec("table2", f"Table 2: fusion of two networks, {label}, {backbone} (top-1 %)",
                            t2.rows, (column2,), splits["table2"], paper2),
        "table3": TableSpec("table3", f"Table 3: final late fusion, m-fusion : spatial : temporal = 2 : 3 : 4 "
                                      f"(and searched weights), {label}, {backbone} (top-1 %)",
                            tuple(ROWS[n] for n in ("final_conv5", "final_fc7", "searched_conv5", "searched_fc7")),
                            (column2,), splits["table3"], paper3),
    }


def results_of(runs: Runs, specs: Mapping[str, TableSpec]) -> dict[str, list[Result]]:
    """``{table: [Result]}`` of every score set of every split and seed."""
    grouped: dict[str, list[Result]] = {name: [] for name in specs}
    for (split, seed), scores in runs.items():
        for name, score_set in scores.items():
            table, row, column = CELLS[name]
            evaluation = evaluate(score_set)
            grouped[table].append(Result(row, column or specs[table].columns[0], split, evaluation.accuracy, seed,
                                         evaluation.mean_class_accuracy))
    return grouped


def build_tables(runs: Runs, specs: Mapping[str, TableSpec], split: int | None = None) -> list[Table]:
    """Tables 1-3 of one split (``split``) or over every split of ``runs`` (None)."""
    chosen = {key: value for key, value in runs.items() if split is None or key[0] == split}
    grouped = results_of(chosen, specs)
    return [build_table(specs[name], grouped[name]) for name in specs]


def accuracies(runs: Runs) -> dict[str, list[float]]:
    """Top-1 accuracy of every score set per seed (each seed's mean over the splits), seeds in order."""
    per_seed: dict[str, dict[int, list[float]]] = {}
    for (_, seed), scores in sorted(runs.items()):
        for name, score_set in scores.items():
            per_seed.setdefault(name, {}).setdefault(seed, []).append(evaluate(score_set).accuracy)
    return {name: [float(np.mean(v)) for _, v in sorted(seeds.items())] for name, seeds in per_seed.items()}


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


def mean_std(values: Sequence[float], digits: int = 1) -> str:
    """``mean ± std`` (sample std) of ``values``, or the value alone for one."""
    values = np.asarray(values, dtype=float)
    if len(values) > 1:
        return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"
    return f"{values.mean():.{digits}f}"


def ceiling_lines(acc: Mapping[str, list[float]]) -> list[str]:
    """A table: accuracy (mean ± std over seeds) against the ceiling the synthetic set was designed with."""
    lines = ["| model | accuracy (%) | designed ceiling (%) | share of the ceiling |", "|---|---|---|---|"]
    for name, kind in CEILING_KINDS.items():
        values = 100 * np.asarray(acc[name])
        lines.append(f"| {ROWS[name]} | {mean_std(values)} | {100 * ceiling(kind):.1f} | "
                     f"{values.mean() / (100 * ceiling(kind)):.0%} |")
    return lines


def loss_lines(losses: Mapping[str, Sequence[float]], num_classes: int) -> list[str]:
    """A table: final training loss (mean ± std over runs) against chance and the designed floor."""
    lines = [f"| net | final training loss | chance (ln {num_classes}) | designed floor |", "|---|---|---|---|"]
    for net, kind in LOSS_KINDS.items():
        if losses.get(net):
            lines.append(f"| {ROWS[net]} | {mean_std(losses[net], 2)} | {np.log(num_classes):.2f} | "
                         f"{loss_floor(kind):.2f} |")
    return lines


def binding_lines(runs: Runs, classes: Sequence[str]) -> list[str]:
    """A table: per-class accuracy (%, mean over the runs) on the binding pairs, late vs multiplicative fusion."""
    per_class = {ROWS[name]: 100 * np.mean([per_class_accuracy(evaluate(scores[name]).confusion)
                                            for scores in runs.values()], axis=0) for name in BINDING_ROWS}
    lines = ["| binding pair | " + " | ".join(per_class) + " |", "|---|" + "---|" * len(per_class)]
    for a, b, values in pair_accuracies(per_class, classes):
        lines.append(f"| {a} / {b} | " + " | ".join(f"{va:.0f} / {vb:.0f}" for va, vb in values.values()) + " |")
    return lines


def gate_lines(gate: Mapping) -> list[str]:
    """A table: the amplification gate on moving discs vs background (``mfuse.evaluation.mechanism.GateContrast``
    fields and ``grid``)."""
    grid = gate["grid"]
    return ["| where | mean gate on moving discs | mean gate on the background | contrast |", "|---|---|---|---|",
            f"| frames ({gate['frames']} test flow images) | {gate['moving']:.2f} | {gate['background']:.2f} | "
            f"{gate['moving'] / gate['background']:.2f} |",
            f"| {grid}x{grid} conv5 grid (centre crop) | {gate['grid_moving']:.2f} | {gate['grid_background']:.2f} | "
            f"{gate['grid_moving'] / gate['grid_background']:.2f} |"]


def timing_lines(timings: Mapping[str, float]) -> list[str]:
    """A table: minutes per stage when it ran (``{stage: seconds}``, the recipe's stage names), the splits' and
    seeds' stages summed per net (``split<k>/seed<s>/<stage>``)."""
    totals: dict[str, float] = {}
    for stage, seconds in timings.items():
        parts = stage.split("/")
        if len(parts) == 3:
            step = parts[2]
            stage = ("test (every net)" if step.startswith(("test_", "heldout_")) else
                     "initialisation (surgery)" if step.startswith("init_") else
                     "nets and solvers" if step == "nets" else "late fusion" if step == "fusion" else f"train {step}")
        totals[stage] = totals.get(stage, 0.0) + seconds
    lines = ["| stage | minutes (every split and seed) |", "|---|---|"]
    lines += [f"| {stage} | {seconds / 60:.1f} |" for stage, seconds in totals.items()]
    return lines + [f"| total | {sum(totals.values()) / 60:.1f} |"]


def mechanism_lines(runs: Runs, classes: Sequence[str], acc: Mapping[str, list[float]],
                    mechanism: Mapping) -> list[str]:
    """The synthetic set's mechanism section (``mechanism``: ``gate`` or None with ``gate_note``, ``losses``)."""
    gate = (gate_lines(mechanism["gate"]) if mechanism.get("gate") else
            [f"Not measured: {mechanism.get('gate_note', 'no magnitude store')}."])
    return ["## Mechanism check", "",
            "Accuracy against what a perfect model of each kind reaches on this data (by design, "
            "`mfuse.synthetic.SEPARABLE`):", "", *ceiling_lines(acc), "",
            "Training loss (smoothed, last displayed iterations; mean ± std over the runs) against chance and "
            "against the lowest loss a perfect model of the kind reaches:", "",
            *loss_lines(mechanism["losses"], len(classes)), "",
            "The amplification gate `offset + scale * magnitude` (FlowAmplify's defaults) on the test videos, from "
            "the generator's disc masks (moving discs vs pixels with no disc):", "", *gate, "",
            "Per-class accuracy (%) on the binding pairs (same discs, same motions, only which disc does what "
            "differs), mean over the runs:", "", *binding_lines(runs, classes), ""]


def example_videos(scores: ScoreSet, count: int = NUM_EXAMPLES) -> list[str]:
    """Up to ``count`` video ids spread over the sorted ids of ``scores`` (the Figure 3/4 examples)."""
    order = np.argsort([v for v in scores.video_ids])[:: max(1, len(scores) // count)][:count]
    return [str(scores.video_ids[i]) for i in order]


def class_accuracies(scores: Mapping[str, ScoreSet], names: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-class accuracy of the named score sets (for the bar plot)."""
    return {ROWS[name]: per_class_accuracy(evaluate(scores[name]).confusion) for name in names}


def write_pictures(scores: Mapping[str, ScoreSet], classes: Sequence[str],
                   examples: Mapping[str, tuple[np.ndarray, np.ndarray]], logs: Sequence[Path], title: str,
                   out: Path) -> list[Path]:
    """Confusion matrix, per-class bars, training curves (one per log) and Figure 3/4-style examples
    (``examples``: ``{video_id: (BGR frame, magnitude map)}``) of one split and seed's ``scores``."""
    paths = [plot_confusion(evaluate(scores["final_conv5"]).confusion, classes, out / "confusion_final_conv5.png",
                            title=f"{ROWS['final_conv5']} ({title})"),
             plot_per_class_accuracy(class_accuracies(scores, ("spatial", "spatial_amp", "temporal", "S+T",
                                                               "mfuse_conv5", "final_conv5")),
                                     classes, out / "per_class_accuracy.png")]
    for log in logs:
        paths.append(plot_training_curves(read_train_log(log), out / f"curves_{log.stem}.png",
                                          title=f"{log.stem} ({title})"))
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


def describe(about: Mapping, num_classes: int, num_test: Mapping[int, int]) -> str:
    """The report's first paragraph: what the run was, honestly."""
    synthetic = about["format"] == "synthetic"
    data = (f"SYNTHETIC data (mfuse.synthetic, {about['synthetic']})" if synthetic
            else f"the {about['format']}-format lists")
    tests = ", ".join(f"split {k}: {n} test videos" for k, n in sorted(num_test.items()))
    text = (f"What this is: the paper's pipeline on {data}, {num_classes} classes ({tests}); the {about['backbone']} "
            f"backbone starting from {about['pretrained']} (temporal net: {about['temporal_init']}), fusion "
            f"activation {about['fusion_activation']}, {about['flow']} flow, {about['protocol']}, seeds "
            f"{about['seeds']}.")
    if about["heldout_fraction"]:
        text += (f" The nets trained on the training lists minus {about['heldout_fraction']:.0%} of their videos, "
                 "held out for the fusion weight search.")
    if about["schedules_changed"]:
        text += f" Schedules changed from the backbone's: {about['schedules_changed']}."
    if synthetic:
        text += (" The numbers say whether the pipeline works and how the methods compare on data designed to need "
                 "both streams; they are not UCF101/HMDB51 results.")
    elif paper_dataset(about, num_classes) is None:
        text += " The paper's numbers are not shown: this is not one of its datasets and backbones."
    return text


def write_report(out: Path, about: Mapping, runs: Runs, classes: Sequence[str],
                 examples: Mapping[str, tuple[np.ndarray, np.ndarray]], logs: Sequence[Path],
                 mechanism: Mapping | None = None, timings: Mapping[str, float] | None = None) -> Path:
    """Writes every table (md/csv) per split (``split<k>/``) and over the splits (``mean/``), ``results.json``,
    the pictures and ``results.md`` into ``out``; returns results.md.

    Args:
        about: what the run was (JSON-able; see ``mfuse.recipe.plan.Recipe.about``).
        runs: ``{(split, seed): {name: ScoreSet}}``, names among ``ROWS`` (each split and seed the same names).
        classes: class names in label order.
        examples, logs: the first split and seed's example images and training logs (see :func:`write_pictures`).
        mechanism: the synthetic set's mechanism measurements (see :func:`mechanism_lines`), or None.
        timings: ``{stage: seconds}`` of the stages when they ran, or None.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    specs = table_specs(about, len(classes))
    splits = sorted({split for split, _ in runs})
    first = min(runs)
    sections = []
    for split in splits:
        tables = build_tables(runs, specs, split)
        for table in tables:
            write_table(table, out / f"split{split}")
        sections += [f"## Split {split}", "", *(t.to_markdown() for t in tables)]
    if len(splits) > 1:
        tables = build_tables(runs, specs)
        for table in tables:
            write_table(table, out / "mean")
        sections += [f"## Mean over splits {', '.join(map(str, splits))}"
                     + ("" if tuple(splits) == SPLITS else " (the paper averages splits 1-3)"), "",
                     *(t.to_markdown() for t in tables)]
    acc = accuracies(runs)
    pictures = write_pictures(runs[first], classes, examples, logs, f"split {first[0]}, seed {first[1]}", out)
    num_test = {split: len(next(iter(runs[(split, seed)].values()))) for split, seed in runs}
    write_atomic(out / "results.json", json.dumps(
        {"about": dict(about), "classes": list(classes), "accuracy": acc, "mechanism": mechanism,
         "timings": timings,
         "per_split": {f"split{k}/seed{s}": {name: evaluate(v).accuracy for name, v in scores.items()}
                       for (k, s), scores in sorted(runs.items())}}, indent=2))
    lines = [f"# mfuse results: {about['format']}, {about['backbone']}", "", describe(about, len(classes), num_test),
             "", *sections, "## The paper's claims on this data", *claim_lines(acc), "",
             *(mechanism_lines(runs, classes, acc, mechanism) if mechanism else []),
             f"## Pictures (split {first[0]}, seed {first[1]})", *[f"- `{p.name}`" for p in pictures], "",
             *(["## Time per stage", "", *timing_lines(timings), ""] if timings else [])]
    return write_atomic(out / "results.md", "\n".join(lines))
