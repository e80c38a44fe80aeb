"""Parse a Caffe training log (glog lines of ``caffe train`` / pycaffe solvers) into tables.

Recognised lines (anything before them on the line, e.g. the glog prefix ``I1123 10:00:00.000 123
solver.cpp:239] ``, is ignored):

- ``Iteration 20 (2.5 iter/s, 8s/20 iters), loss = 0.53``  (Caffe 1.0; older: ``Iteration 20, loss = 0.53``)
- ``    Train net output #0: loss = 0.53 (* 1 = 0.53 loss)``
- ``Iteration 20, lr = 0.001``
- ``Iteration 40, Testing net (#0)``, then ``    Test net output #0: accuracy = 0.5`` and ``Test loss: 1.2``

``TrainLog.train`` has one row per displayed iteration: ``iteration``, ``smoothed_loss`` (the loss on the
``Iteration`` line, averaged over ``average_loss`` iterations), ``lr``, ``iters_per_s`` and every train net
output by its blob name (e.g. ``loss``, the loss of that iteration); ``TrainLog.test`` has one row per test
pass: ``iteration``, ``net`` and every test net output by name. A later row for the same iteration (a
resumed run) replaces the earlier one.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mfuse.fileio import atomic_path

_NUMBER = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|inf|nan)"
_ITER_LOSS = re.compile(rf"Iteration (\d+)(?: \(({_NUMBER}) iter/s, [^)]*\))?, loss = ({_NUMBER})", re.I)
_ITER_LR = re.compile(rf"Iteration (\d+), lr = ({_NUMBER})", re.I)
_TESTING = re.compile(r"Iteration (\d+), Testing net \(#(\d+)\)")
_OUTPUT = re.compile(rf"(Train|Test) net output #(\d+): (\S+) = ({_NUMBER})", re.I)
_TEST_LOSS = re.compile(rf"Test loss: ({_NUMBER})", re.I)


@dataclass
class TrainLog:
    """Parsed log: ``train`` and ``test`` rows (dicts), sorted by iteration (and test net)."""

    train: list[dict] = field(default_factory=list)
    test: list[dict] = field(default_factory=list)

    def columns(self, part: str) -> list[str]:
        """Column names of ``part`` (``"train"`` or ``"test"``) in first-seen order."""
        names: dict[str, None] = {}
        for row in getattr(self, part):
            names.update(dict.fromkeys(row))
        return list(names)

    def series(self, part: str, column: str) -> tuple[list[int], list[float]]:
        """(iterations, values) of ``column`` over the rows of ``part`` that have it."""
        rows = [row for row in getattr(self, part) if column in row]
        return [row["iteration"] for row in rows], [row[column] for row in rows]

    def write_csv(self, directory: str | os.PathLike, stem: str = "train_log") -> list[Path]:
        """``<stem>_train.csv`` and ``<stem>_test.csv`` in ``directory`` (empty cells where a row lacks a
        column); returns the paths."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for part in ("train", "test"):
            path = directory / f"{stem}_{part}.csv"
            with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self.columns(part) or ["iteration"])
                writer.writeheader()
                writer.writerows(getattr(self, part))
            paths.append(path)
        return paths


def _put(row: dict, name: str, index: int, value: float) -> None:
    """Store an output under its name (``name#index`` when a blob reports several values)."""
    row[name if name not in row else f"{name}#{index}"] = value


def parse_train_log(lines: Iterable[str]) -> TrainLog:
    """Parse log ``lines`` (e.g. an open file); see the module docstring."""
    train: dict[int, dict] = {}
    test: dict[tuple[int, int], dict] = {}
    current_train: dict | None = None
    current_test: dict | None = None
    for line in lines:
        if match := _ITER_LOSS.search(line):
            iteration = int(match[1])
            current_train = train[iteration] = {"iteration": iteration, "smoothed_loss": float(match[3])}
            if match[2] is not None:
                current_train["iters_per_s"] = float(match[2])
            current_test = None
        elif match := _ITER_LR.search(line):
            iteration = int(match[1])
            train.setdefault(iteration, {"iteration": iteration})["lr"] = float(match[2])
        elif match := _TESTING.search(line):
            key = (int(match[1]), int(match[2]))
            current_test = test[key] = {"iteration": key[0], "net": key[1]}
            current_train = None
        elif match := _OUTPUT.search(line):
            row = current_train if match[1].lower() == "train" else current_test
            if row is not None:
                _put(row, match[3], int(match[2]), float(match[4]))
        elif (match := _TEST_LOSS.search(line)) and current_test is not None:
            current_test["test_loss"] = float(match[1])
    return TrainLog(train=[train[k] for k in sorted(train)], test=[test[k] for k in sorted(test)])


def read_train_log(path: str | os.PathLike) -> TrainLog:
    """Parse the log file at ``path``."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return parse_train_log(f)
