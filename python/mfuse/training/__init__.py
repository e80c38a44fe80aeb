"""Training: ``caffe train`` on one device or one pycaffe process per GPU (NCCL), run records, net surgery.

- ``run``: :func:`train` / :func:`run_training`, the entry points (single or multi-GPU, skip/force, resume);
- ``solver``: what a solver says (final snapshot, nets, batch) and how its batch spreads over GPUs;
- ``record``: the run record beside a final snapshot (what produced it);
- ``devices``: ``--gpus`` parsing and the GPUs the machine has;
- ``launcher``: running the processes (log, progress, failure of any rank stops all, watchdog);
- ``worker``: one rank (``python -m mfuse.training.worker``).
"""
from mfuse.training.devices import ALL_GPUS, GpuSelectionError, cuda_device_count, parse_gpus, resolve_gpus
from mfuse.training.launcher import TrainingError
from mfuse.training.record import read_record, record_path
from mfuse.training.run import TrainResult, default_log, run_training, train
from mfuse.training.solver import (BATCH_MODES, BATCH_PER_GPU, BATCH_SPLIT, BatchPlan, SolverInfo, plan_batch,
                                   read_solver, solverstate_iteration)

__all__ = ["ALL_GPUS", "BATCH_MODES", "BATCH_PER_GPU", "BATCH_SPLIT", "BatchPlan", "GpuSelectionError", "SolverInfo",
           "TrainResult", "TrainingError", "cuda_device_count", "default_log", "parse_gpus", "plan_batch",
           "read_record", "read_solver", "record_path", "resolve_gpus", "run_training", "solverstate_iteration",
           "train"]
