"""Shared fixtures: nets (``load_net``) and a tiny prepared dataset (``tiny_data_root``)."""
import caffe
import pytest
from caffe.proto import caffe_pb2
from google.protobuf import text_format


def _constant_fillers(message) -> None:
    """Turns every FillerParameter inside ``message`` into constant 0 (in place): the shapes stay, the
    hundreds of millions of Gaussian draws of the big nets are skipped."""
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        values = value if field.is_repeated else [value]
        for item in values:
            if isinstance(item, caffe_pb2.FillerParameter):
                item.Clear()
                item.type = "constant"
            else:
                _constant_fillers(item)


@pytest.fixture
def load_net(tmp_path):
    """``load_net(proto_or_path, fast=True, phase=caffe.TEST)``: a ``caffe.Net`` of a NetParameter or prototxt
    path; ``fast`` replaces the fillers by constants first."""
    caffe.set_mode_cpu()
    count = [0]

    def load(proto, fast=True, phase=caffe.TEST):
        if not isinstance(proto, caffe_pb2.NetParameter):
            proto = text_format.Merge(open(proto).read(), caffe_pb2.NetParameter())
        if fast:
            copy = caffe_pb2.NetParameter()
            copy.CopyFrom(proto)
            _constant_fillers(copy)
            proto = copy
        count[0] += 1
        path = tmp_path / f"net_{count[0]}.prototxt"
        path.write_text(text_format.MessageToString(proto))
        return caffe.Net(str(path), phase)
    return load


@pytest.fixture(scope="session")
def tiny_data_root(tmp_path_factory):
    """A prepared dataset folder (frames, DIS flow, split-1 LMDBs) of 32 tiny synthetic videos."""
    from mfuse.prep.frames import ExtractSettings
    from mfuse.prep.pipeline import prepare_dataset
    from mfuse.synthetic.generator import SyntheticConfig, generate
    from mfuse.synthetic.layout import UCF101_LIST_DIR

    root = tmp_path_factory.mktemp("tiny_data")
    generate(root / "dataset", SyntheticConfig(num_groups=4, clips_per_group=1, num_frames=13), progress=False)
    prepare_dataset("ucf101", root / "dataset", root / "dataset" / UCF101_LIST_DIR, root / "data",
                    ExtractSettings(short_side=None, flow_algorithm="dis"), splits=(1,), workers=2, progress=False)
    return root / "data"
