"""The launcher with fake ranks (no Caffe, no GPU): progress, rank 0's timeline, and failure handling — a rank
that raises, aborts, stalls or quits early stops every rank with its message; ranks die with the launcher."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from mfuse.training.launcher import (STATUS_FD_ENV, RankProcess, StatusChannel, TrainingError, log_cause,
                                     run_caffe_binary, run_ranks)

#: A fake rank: ``fake.py <behaviour> <rank>``. Rank 0 always trains 5 iterations, unless it has to wait for a
#: peer (``hang``): then it blocks as a rank in an all-reduce whose peer is gone.
FAKE = textwrap.dedent("""\
    import os, sys, time
    from mfuse.training.launcher import StatusChannel
    behaviour, rank = sys.argv[1], int(sys.argv[2])
    status = StatusChannel.from_env()
    if behaviour == "orphan":
        from mfuse.training.worker import _die_with_launcher
        _die_with_launcher()
        open(sys.argv[3], "w").write(str(os.getpid()))
        time.sleep(600)
    for i in range(5):
        status.iteration(i, 0.5 * i)
        print(f"I1126 solver.cpp:243] Iteration {i}, loss = 1.0", file=sys.stderr, flush=True)
        if rank == 1 and i == 2:
            if behaviour == "raise":
                print("Traceback ...", file=sys.stderr, flush=True)
                status.error("ValueError: data layer 'data': no videos in split 1")
                sys.exit(1)
            if behaviour == "abort":
                print("F1126 net.cpp:42] Check failed: K_ == new_K (288 vs. 6272)", file=sys.stderr, flush=True)
                os.abort()
            if behaviour == "stall":
                time.sleep(600)
            if behaviour == "quit":
                sys.exit(0)
        if rank == 0 and behaviour not in ("ok", "stall") and i == 3:
            time.sleep(600)
    status.iteration(5, 2.5)
    status.done()
    """)


@pytest.fixture
def fake(tmp_path):
    script = tmp_path / "fake.py"
    script.write_text(FAKE)

    def ranks(behaviour, count=2, extra=()):
        return [RankProcess([sys.executable, str(script), behaviour, str(rank), *extra], tmp_path / f"rank{rank}.log",
                            f"rank {rank} (GPU {rank})") for rank in range(count)]
    return ranks


def run(processes, **kwargs):
    kwargs = {"total_iters": 5, "progress": False, **kwargs}
    return run_ranks(processes, dict(os.environ), **kwargs)


def test_ranks_that_finish_return_rank_zeros_timeline(fake, tmp_path):
    timeline = run(fake("ok"))
    assert [event[0] for event in timeline] == [0, 1, 2, 3, 4, 5]
    assert [event[2] for event in timeline] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert all(a[1] <= b[1] for a, b in zip(timeline, timeline[1:]))
    assert "Iteration 4" in (tmp_path / "rank0.log").read_text()
    assert "Iteration 4" in (tmp_path / "rank1.log").read_text()


@pytest.mark.parametrize("behaviour, expected", [
    ("raise", r"rank 1 \(GPU 1\) failed \(exit 1\): ValueError: data layer 'data': no videos in split 1 "
              r"\[log: .*rank1.log\]; the other ranks were stopped"),
    ("abort", r"rank 1 \(GPU 1\) failed \(killed by SIGABRT\): F1126 net.cpp:42\] Check failed: K_ == new_K "
              r"\(288 vs. 6272\)"),
    ("quit", r"rank 1 \(GPU 1\) failed \(exited without finishing its iterations\)"),
])
def test_a_failing_rank_stops_all_with_its_message(fake, behaviour, expected):
    ranks = fake(behaviour)
    started = time.monotonic()
    with pytest.raises(TrainingError, match=expected):
        run(ranks)
    # Rank 0 waits for rank 1 forever (600 s): it was stopped, not waited for.
    assert time.monotonic() - started < 60


def test_a_stalled_rank_is_caught_by_the_watchdog(fake):
    # Rank 0 finishes; rank 1 stops sending iterations after its third.
    with pytest.raises(TrainingError, match=r"rank 1 \(GPU 1\) made no progress for 1 s after starting iteration "
                                            r"2 \(a hung rank or all-reduce; see .*rank1.log\)"):
        run(fake("stall"), stall_timeout=1)


def test_a_rank_that_never_starts_is_caught(tmp_path):
    ranks = [RankProcess([sys.executable, "-c", "import time; time.sleep(600)"], tmp_path / "r.log", "rank 0")]
    with pytest.raises(TrainingError, match="rank 0 made no progress for 1 s before its first iteration"):
        run(ranks, start_timeout=1)


def test_ranks_die_with_the_launcher(fake, tmp_path):
    pid_file = tmp_path / "rank.pid"
    processes = fake("orphan", count=1, extra=[str(pid_file)])
    launcher = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""\
        import os
        from pathlib import Path
        from mfuse.training.launcher import RankProcess, run_ranks
        run_ranks([RankProcess({processes[0].command!r}, Path({str(processes[0].log)!r}), "rank 0")],
                  dict(os.environ), progress=False)
        """)])
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and launcher.poll() is None
        time.sleep(0.1)
    rank_pid = int(pid_file.read_text())
    launcher.send_signal(signal.SIGKILL)
    launcher.wait()
    while time.monotonic() < deadline:
        try:
            os.kill(rank_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail(f"rank {rank_pid} outlived its launcher")


def test_status_channel_without_a_launcher_does_nothing(monkeypatch):
    monkeypatch.delenv(STATUS_FD_ENV, raising=False)
    channel = StatusChannel.from_env()
    channel.iteration(3)
    channel.error("x")
    channel.done()


def test_log_cause_prefers_the_fatal_line(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("I1126 start\nF1126 layer.cpp:1] Check failed: x\n*** Check failure stack trace: ***\n    @ 0x1\n")
    assert log_cause(log) == "F1126 layer.cpp:1] Check failed: x"
    log.write_text("I1126 only info\n\n")
    assert log_cause(log) == "I1126 only info"
    assert log_cause(tmp_path / "missing.log") == ""


def test_caffe_binary_runner_logs_and_returns_the_exit_status(tmp_path):
    script = "import sys; print('Iteration 1'); print('Iteration 2'); sys.exit(3)"
    code = run_caffe_binary([sys.executable, "-c", script], tmp_path / "b.log", dict(os.environ), tmp_path, 2,
                            progress=False)
    assert code == 3
    assert (tmp_path / "b.log").read_text() == "Iteration 1\nIteration 2\n"
