"""Result tables laid out like the paper's Tables 1-3, with the paper's numbers alongside.

Results are ``Result`` records (one model, one column, one split, one seed; accuracy as a fraction), made
by hand, from dicts, or from score files (``result_from_scores``). A cell averages the splits of each seed
(the paper's 3-split mean), then reports the mean +- sample standard deviation over seeds, in percent.
A cell whose splits differ from the table's protocol (e.g. only split 1 where the paper averages 3 splits)
is marked with a dagger and listed in a footnote.

``PAPER_TABLES`` holds the paper's tables (numbers from the paper, in percent); ``TableSpec`` describes any
other table (e.g. the synthetic-data experiments) the same way, with or without paper numbers.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mfuse.conventions import SPLITS
from mfuse.evaluation.metrics import evaluate
from mfuse.evaluation.scores import ScoreSet, load_scores
from mfuse.fileio import write_atomic


@dataclass(frozen=True)
class TableSpec:
    """Rows (models), columns (dataset / variant), the splits the protocol averages, and the paper's
    numbers ``{(row, column): percent}`` (a row/column pair absent from ``paper`` has no paper value)."""

    name: str
    title: str
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    splits: tuple[int, ...] = SPLITS
    paper: Mapping[tuple[str, str], float] = field(default_factory=dict)


def _paper(rows: Sequence[str], columns: Sequence[str], values: Sequence[Sequence[float | None]]):
    return {(r, c): v for r, row in zip(rows, values) for c, v in zip(columns, row) if v is not None}


_T1_ROWS = ("S (CNN-M)", "S (VGG19)", "T", "S + T", "S (VGG19) + T")
_T1_COLS = ("UCF101 base", "UCF101 amp", "HMDB51 base", "HMDB51 amp")
_T2_ROWS = ("baseline A", "baseline B", "m-fusion (conv5)", "m-fusion (fc7)")
_T2_COLS = ("UCF101 basic", "UCF101 VGG19", "HMDB51 basic", "HMDB51 VGG19")
_T3_ROWS = ("S (amp) + T + m-fusion (conv5)", "S (amp) + T + m-fusion (fc7)")
_T3_COLS = ("UCF101", "HMDB51")

PAPER_TABLES: dict[str, TableSpec] = {
    "table1": TableSpec(
        "table1", "Table 1: feature amplification, base vs amplified (3-split mean accuracy, %)",
        _T1_ROWS, _T1_COLS, SPLITS,
        _paper(_T1_ROWS, _T1_COLS, [(70.6, 75.0, 35.4, 38.0), (78.8, 81.0, 40.3, 44.9), (80.3, None, 47.3, None),
                                    (85.0, 85.5, 50.6, 51.2), (87.8, 88.5, 50.1, 54.5)])),
    "table2": TableSpec(
        "table2", "Table 2: fusion of two networks, basic (CNN-M) and VGG19 spatial net (split 1 accuracy, %)",
        _T2_ROWS, _T2_COLS, (1,),
        _paper(_T2_ROWS, _T2_COLS, [(75.3, 82.2, 37.4, 36.9), (76.0, 81.0, 39.2, 38.7), (82.1, 84.4, 51.6, 52.7),
                                    (83.4, 87.6, 52.0, 53.3)])),
    "table3": TableSpec(
        "table3", "Table 3: final, m-fusion : spatial : temporal = 2 : 3 : 4 (3-split mean accuracy, %)",
        _T3_ROWS, _T3_COLS, SPLITS, _paper(_T3_ROWS, _T3_COLS, [(88.9, 56.2), (89.1, 54.9)])),
}


@dataclass(frozen=True)
class Result:
    """Top-1 ``accuracy`` (fraction, 0..1) of one model (``row``) in one ``column`` on one split and seed."""

    row: str
    column: str
    split: int
    accuracy: float
    seed: int = 0
    mean_class_accuracy: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.accuracy <= 1.0:
            raise ValueError(f"{self.row} / {self.column}: accuracy is a fraction in [0, 1], got {self.accuracy}")
        if self.split not in SPLITS:
            raise ValueError(f"{self.row} / {self.column}: split must be one of {SPLITS}, got {self.split}")


def result_from_scores(score_set: ScoreSet | str | os.PathLike, row: str, column: str, seed: int = 0) -> Result:
    """A ``Result`` from a score set or score file (split read from its meta)."""
    if not isinstance(score_set, ScoreSet):
        score_set = load_scores(score_set)
    evaluation = evaluate(score_set)
    return Result(row, column, score_set.split, evaluation.accuracy, seed, evaluation.mean_class_accuracy)


@dataclass(frozen=True)
class Cell:
    """One filled cell: mean and spread (sample std over seeds, percent; None with one seed), the seeds
    and splits used, the paper's value, and whether the splits match the table's protocol."""

    mean: float
    spread: float | None
    seeds: tuple[int, ...]
    splits: tuple[int, ...]
    protocol: bool

    def text(self) -> str:
        value = f"{self.mean:.1f}"
        if self.spread is not None:
            value += f" ± {self.spread:.1f}"
        return value + ("" if self.protocol else " †")


def _cell(results: list[Result], spec: TableSpec) -> Cell:
    by_seed: dict[int, dict[int, float]] = {}
    for r in results:
        if r.split in by_seed.setdefault(r.seed, {}):
            raise ValueError(f"{r.row} / {r.column}: two results for split {r.split}, seed {r.seed}")
        by_seed[r.seed][r.split] = r.accuracy
    per_seed = [100.0 * float(np.mean(list(splits.values()))) for splits in by_seed.values()]
    split_sets = {tuple(sorted(s)) for s in by_seed.values()}
    splits = tuple(sorted(set().union(*split_sets)))
    protocol = split_sets == {tuple(sorted(spec.splits))}
    spread = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else None
    return Cell(float(np.mean(per_seed)), spread, tuple(sorted(by_seed)), splits, protocol)


@dataclass
class Table:
    """A filled table: ``cells[(row, column)]`` for the cells with results."""

    spec: TableSpec
    cells: dict[tuple[str, str], Cell]

    def has_paper(self) -> bool:
        return bool(self.spec.paper)

    def header(self) -> list[str]:
        header = ["model"]
        for column in self.spec.columns:
            header += [column, f"{column} (paper)"] if self.has_paper() else [column]
        return header

    def body(self) -> list[list[str]]:
        """Rows of cell texts, each data column followed by the paper's value when the table has any."""
        rows = []
        for row in self.spec.rows:
            line = [row]
            for column in self.spec.columns:
                cell = self.cells.get((row, column))
                line.append("—" if cell is None else cell.text())
                if self.has_paper():
                    paper = self.spec.paper.get((row, column))
                    line.append("—" if paper is None else f"{paper:.1f}")
            rows.append(line)
        return rows

    def footnotes(self) -> list[str]:
        notes = []
        seeds = sorted({len(c.seeds) for c in self.cells.values()})
        if seeds:
            notes.append(f"Mean ± sample std over seeds (seeds per cell: {', '.join(map(str, seeds))}); "
                         f"each seed averages splits {', '.join(map(str, self.spec.splits))}.")
        for (row, column), cell in self.cells.items():
            if not cell.protocol:
                notes.append(f"† {row} / {column}: splits {', '.join(map(str, cell.splits))} "
                             f"(protocol: {', '.join(map(str, self.spec.splits))}).")
        return notes

    def to_markdown(self) -> str:
        header = self.header()
        lines = [f"**{self.spec.title}**", "", "| " + " | ".join(header) + " |",
                 "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(line) + " |" for line in self.body()]
        notes = self.footnotes()
        if notes:
            lines += [""] + [f"- {note}" for note in notes]
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        """Long format, one line per (row, column): mean, std, seeds, splits, protocol, paper (percent)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["table", "model", "column", "mean", "std", "num_seeds", "splits", "protocol", "paper"])
        for row in self.spec.rows:
            for column in self.spec.columns:
                cell, paper = self.cells.get((row, column)), self.spec.paper.get((row, column))
                if cell is None and paper is None:
                    continue
                values = ["", "", 0, "", ""] if cell is None else [
                    f"{cell.mean:.2f}", "" if cell.spread is None else f"{cell.spread:.2f}", len(cell.seeds),
                    " ".join(map(str, cell.splits)), cell.protocol]
                writer.writerow([self.spec.name, row, column, *values, "" if paper is None else paper])
        return buffer.getvalue()


def build_table(spec: TableSpec, results: Iterable[Result | Mapping]) -> Table:
    """Fill ``spec`` with ``results`` (``Result`` objects or dicts of its fields). Unknown rows or columns
    raise ``ValueError`` (a typo would otherwise drop a result silently)."""
    grouped: dict[tuple[str, str], list[Result]] = {}
    for result in results:
        result = result if isinstance(result, Result) else Result(**result)
        if result.row not in spec.rows or result.column not in spec.columns:
            raise ValueError(f"{spec.name}: no cell for row {result.row!r}, column {result.column!r}; "
                             f"rows {list(spec.rows)}, columns {list(spec.columns)}")
        grouped.setdefault((result.row, result.column), []).append(result)
    return Table(spec, {key: _cell(group, spec) for key, group in grouped.items()})


def write_table(table: Table, directory: str | os.PathLike) -> list[Path]:
    """``<name>.md`` and ``<name>.csv`` in ``directory``, written atomically; returns the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix, text in ((".md", table.to_markdown()), (".csv", table.to_csv())):
        path = directory / f"{table.spec.name}{suffix}"
        paths.append(write_atomic(path, text))
    return paths


def gain(table: Table, row: str, base: str, improved: str) -> float | None:
    """Percentage-point change from column ``base`` to ``improved`` in ``row`` (None if a cell is empty),
    e.g. the amplification gain of Table 1."""
    a, b = table.cells.get((row, base)), table.cells.get((row, improved))
    return None if a is None or b is None else b.mean - a.mean
