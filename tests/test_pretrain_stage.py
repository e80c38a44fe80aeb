"""mfuse.pretrain.stage: the image LMDBs, the cached stage, and its model going through imagenet-init."""
import json
from dataclasses import replace

import caffe
import lmdb
import pytest
from caffe.proto import caffe_pb2

from mfuse.nets import solvers
from mfuse.nets.build_all import COMMITTED, build_net
from mfuse.nets.inputs import DeployInputs
from mfuse.pretrain import ImageTaskConfig, PretrainConfig, pretrain_backbone, write_image_lmdb
from mfuse.pretrain import IMAGENET_CLASSIFIER
from mfuse.surgery import ADAPTED, COPIED, SKIPPED, UNUSED, init_from_imagenet

TINY_TASK = ImageTaskConfig(num_shapes=2, num_hues=2, num_textures=1, size=(72, 72), train_per_class=4,
                            val_per_class=2)
QUICK = PretrainConfig(images=TINY_TASK, schedule=replace(solvers.TINY_PRETRAIN, max_iter=4, steps=(2,), batch=8,
                                                          snapshot=4, test_interval=4),
                       batch_size=8)


def test_image_lmdb_holds_encoded_datums_of_every_category(tmp_path):
    count = write_image_lmdb(tmp_path / "db", TINY_TASK, "val", progress=False)
    assert count == 8
    with lmdb.open(str(tmp_path / "db"), readonly=True, lock=False) as env, env.begin() as txn:
        datums = [caffe_pb2.Datum.FromString(value) for _, value in txn.cursor()]
    assert len(datums) == 8 and all(d.encoded and d.data[:2] == b"\xff\xd8" for d in datums)  # JPEG
    assert sorted(d.label for d in datums) == [0, 0, 1, 1, 2, 2, 3, 3]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain")
    return out, pretrain_backbone(out, QUICK, progress=False)


def test_the_stage_writes_a_model_and_a_manifest_and_is_cached(pretrained):
    out, model = pretrained
    assert model == out / "pretrained.caffemodel" and model.stat().st_size > 1000
    manifest = json.loads((out / "pretrain.json").read_text())
    assert manifest["config"] == QUICK.as_json() and manifest["images"] == {"train": 16, "val": 8}
    assert 0.0 <= manifest["val_accuracy"] <= 1.0 and len(manifest["classes"]) == 4
    before = model.stat().st_mtime_ns
    assert pretrain_backbone(out, QUICK, progress=False) == model
    assert model.stat().st_mtime_ns == before
    with pytest.raises(FileExistsError, match="another config"):
        pretrain_backbone(out, replace(QUICK, seed=2), progress=False)


def test_stream_nets_start_from_it_as_from_an_imagenet_model(pretrained, tmp_path):
    _, model = pretrained
    net_set = COMMITTED["tiny"]
    for net, cross in (("spatial", False), ("temporal", True)):
        deploy = tmp_path / f"{net}.prototxt"
        deploy.write_text(str(build_net(net, net_set, DeployInputs(batch_size=1))))
        records = {r.target or r.source.rsplit(":", 1)[1]: r.status
                   for r in init_from_imagenet(deploy, model, tmp_path / f"{net}.caffemodel", cross_modality=cross)}
        assert records["conv1"] == (ADAPTED if cross else COPIED)
        assert all(records[layer] == COPIED for layer in ("conv2", "conv3", "conv4", "conv5", "fc6", "fc7"))
        assert records["fc8_action"] == SKIPPED and records[IMAGENET_CLASSIFIER] == UNUSED
        weights = caffe.Net(str(deploy), str(tmp_path / f"{net}.caffemodel"), caffe.TEST).params
        source = caffe.Net(str(deploy).replace(net, "spatial"), str(model), caffe.TEST).params
        assert (weights["conv5"][0].data == source["conv5"][0].data).all()
        if cross:
            expected = source["conv1"][0].data.mean(axis=1, keepdims=True)
            assert weights["conv1"][0].data.shape[1] == 20
            assert abs(weights["conv1"][0].data - expected).max() < 1e-6
