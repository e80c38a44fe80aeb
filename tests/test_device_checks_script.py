"""tools/device/device_checks.sh (run on the GPU machine only): its CPU-side steps still match the CLIs they call."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "device" / "device_checks.sh"


def test_the_make_nets_step_writes_the_solver_the_training_step_reads(tmp_path):
    text = SCRIPT.read_text()
    line = re.search(r'"\$py" (tools/make_nets\.py .*?) >/dev/null', text.replace("\\\n", " "), re.S).group(1)
    args = (line.replace('"$work', f'"{tmp_path}').replace('"$MFUSE_BUNDLE/data"', f'"{tmp_path / "data"}"')
            .replace('"', "").split())
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'caffe train -solver "$work/nets/spatial_solver.prototxt"' in text
    assert (tmp_path / "nets" / "spatial_solver.prototxt").is_file()


def test_device_query_logs_at_info_although_the_script_keeps_pycaffe_quiet():
    text = SCRIPT.read_text()
    assert "export GLOG_minloglevel=2" in text and "GLOG_minloglevel=0 caffe device_query" in text


def test_the_gpu_test_step_takes_the_crop_size_from_the_net():
    # A fixed crop size went stale when the tiny backbone's crops grew from 48 to 64.
    assert "crop_size=" not in SCRIPT.read_text()
