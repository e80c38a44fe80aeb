"""Tables like the paper's: cells averaged over splits then seeds, paper values alongside, protocol marks."""

import csv
import io

import numpy as np
import pytest

from mfuse.evaluation.scores import ScoreSet, save_scores
from mfuse.reports.tables import PAPER_TABLES, Result, TableSpec, build_table, gain, result_from_scores, write_table


def test_paper_numbers_are_in_the_specs():
    t1, t2, t3 = (PAPER_TABLES[name] for name in ("table1", "table2", "table3"))
    assert t1.paper[("S (CNN-M)", "UCF101 base")] == 70.6 and t1.paper[("S (CNN-M)", "UCF101 amp")] == 75.0
    assert t1.paper[("S (VGG19) + T", "HMDB51 amp")] == 54.5 and ("T", "UCF101 amp") not in t1.paper
    assert t2.splits == (1,) and t2.paper[("m-fusion (fc7)", "UCF101 VGG19")] == 87.6
    assert t3.paper[("S (amp) + T + m-fusion (conv5)", "HMDB51")] == 56.2
    assert len(t1.paper) == 18 and len(t2.paper) == 16 and len(t3.paper) == 4


def test_cells_average_splits_then_seeds():
    results = [Result("S (CNN-M)", "UCF101 base", split, acc, seed)
               for seed, accs in ((0, (0.70, 0.72, 0.74)), (1, (0.71, 0.73, 0.75)))
               for split, acc in zip((1, 2, 3), accs)]
    results += [{"row": "S (CNN-M)", "column": "UCF101 amp", "split": s, "accuracy": 0.75} for s in (1, 2, 3)]
    table = build_table(PAPER_TABLES["table1"], results)
    cell = table.cells[("S (CNN-M)", "UCF101 base")]
    assert cell.mean == pytest.approx(72.5) and cell.spread == pytest.approx(np.std([72.0, 73.0], ddof=1))
    assert cell.seeds == (0, 1) and cell.protocol
    assert table.cells[("S (CNN-M)", "UCF101 amp")].spread is None
    assert gain(table, "S (CNN-M)", "UCF101 base", "UCF101 amp") == pytest.approx(2.5)
    assert gain(table, "T", "UCF101 base", "UCF101 amp") is None
    markdown = table.to_markdown()
    assert "| model | UCF101 base | UCF101 base (paper) | UCF101 amp |" in markdown
    assert "| S (CNN-M) | 72.5 ± 0.7 | 70.6 | 75.0 | 75.0 | — | 35.4 |" in markdown
    assert "| T | — | 80.3 | — | — | — | 47.3 | — | — |" in markdown


def test_cells_off_protocol_are_marked():
    table = build_table(PAPER_TABLES["table1"], [Result("T", "HMDB51 base", 1, 0.45)])
    assert table.cells[("T", "HMDB51 base")].text() == "45.0 †"
    assert "† T / HMDB51 base: splits 1 (protocol: 1, 2, 3)." in table.to_markdown()
    split1 = build_table(PAPER_TABLES["table2"], [Result("baseline A", "UCF101 basic", 1, 0.75)])
    assert split1.cells[("baseline A", "UCF101 basic")].protocol


def test_bad_results_are_refused():
    with pytest.raises(ValueError, match=r"no cell for row 'S\(CNN-M\)'"):
        build_table(PAPER_TABLES["table1"], [Result("S(CNN-M)", "UCF101 base", 1, 0.7)])
    with pytest.raises(ValueError, match="two results for split 1"):
        build_table(PAPER_TABLES["table3"], [Result("S (amp) + T + m-fusion (fc7)", "UCF101", 1, 0.8)] * 2)
    with pytest.raises(ValueError, match="fraction"):
        Result("T", "UCF101 base", 1, 80.3)


def test_from_score_files_and_written_files(tmp_path):
    spec = TableSpec("synthetic", "Synthetic data (accuracy, %)", ("S", "T", "S + T"), ("synthetic",))
    results = []
    for split in (1, 2, 3):
        labels = np.array([0, 1, 1, 0])
        scores = np.eye(2)[[0, 1, 0, 0]] * 0.8 + 0.1  # 3 of 4 right
        path = save_scores(tmp_path / f"s{split}.npz",
                           ScoreSet(["a", "b", "c", "d"], labels, scores, {"split": split, "subset": "test"}))
        results.append(result_from_scores(path, "S", "synthetic"))
    table = build_table(spec, results)
    assert table.cells[("S", "synthetic")].mean == pytest.approx(75.0)
    md, csv_path = write_table(table, tmp_path / "tables")
    assert md.name == "synthetic.md" and "(paper)" not in md.read_text()
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert rows == [{"table": "synthetic", "model": "S", "column": "synthetic", "mean": "75.00", "std": "",
                     "num_seeds": "1", "splits": "1 2 3", "protocol": "True", "paper": ""}]


def test_paper_only_rows_appear_in_csv():
    rows = list(csv.DictReader(io.StringIO(build_table(PAPER_TABLES["table3"], []).to_csv())))
    assert len(rows) == 4 and rows[0]["paper"] == "88.9" and rows[0]["mean"] == ""
