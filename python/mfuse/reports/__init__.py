"""Reports: tables like the paper's Tables 1-3, figures, and Caffe training-log parsing."""
from __future__ import annotations

from mfuse.reports.plots import (AmplificationExample, FusionExample, plot_amplification_examples, plot_confusion,
                                 plot_fusion_examples, plot_per_class_accuracy, plot_training_curves)
from mfuse.reports.tables import (PAPER_TABLES, Cell, Result, Table, TableSpec, build_table, gain, result_from_scores,
                                  write_table)
from mfuse.reports.train_log import TrainLog, parse_train_log, read_train_log

__all__ = ["PAPER_TABLES", "AmplificationExample", "Cell", "FusionExample", "Result", "Table", "TableSpec",
           "TrainLog", "build_table", "gain", "parse_train_log", "plot_amplification_examples", "plot_confusion",
           "plot_fusion_examples", "plot_per_class_accuracy", "plot_training_curves", "read_train_log",
           "result_from_scores", "write_table"]
