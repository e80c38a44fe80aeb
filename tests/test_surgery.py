"""mfuse.surgery: fusion / ImageNet initialisation, FlowAmplify insertion, clear errors on bad sources."""
import subprocess
import sys
from pathlib import Path

import caffe
import numpy as np
import pytest
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from mfuse.nets.backbones import get_backbone
from mfuse.nets.fusion import Fusion, fusion_net
from mfuse.nets.inputs import DeployInputs
from mfuse.nets.streams import spatial_net, temporal_net
from mfuse.surgery import (ADAPTED, COPIED, SKIPPED, UNUSED, SurgeryError, amplified_prototxt, format_report,
                           init_fusion, init_from_imagenet, insert_flow_amplify, read_caffemodel)

REPO = Path(__file__).resolve().parents[1]
TOWER = ["conv1", "conv2", "conv3", "conv4", "conv5"]


def _write(proto, path):
    path.write_text(text_format.MessageToString(proto))
    return path


def _trained(proto, tmp_path, name, seed):
    """Writes ``proto`` and a caffemodel of random weights for it; returns (prototxt, caffemodel, net)."""
    prototxt = _write(proto, tmp_path / f"{name}.prototxt")
    caffe.set_mode_cpu()
    net = caffe.Net(str(prototxt), caffe.TEST)
    rng = np.random.default_rng(seed)
    for blobs in net.params.values():
        for blob in blobs:
            blob.data[...] = rng.normal(0, 0.1, blob.data.shape)
    net.save(str(tmp_path / f"{name}.caffemodel"))
    return prototxt, tmp_path / f"{name}.caffemodel", net


@pytest.fixture
def streams(tmp_path):
    spatial = _trained(spatial_net("tiny", 8, DeployInputs(batch_size=2)), tmp_path, "spatial", 1)
    temporal = _trained(temporal_net("tiny", 8, DeployInputs(batch_size=2)), tmp_path, "temporal", 2)
    return spatial, temporal


@pytest.mark.parametrize("kind", ["baseline_a", "mfuse_conv5", "mfuse_fc7"])
def test_fusion_init_copies_both_towers(tmp_path, streams, kind):
    (_, spatial_model, spatial), (_, temporal_model, temporal) = streams
    fusion = _write(fusion_net("tiny", "tiny", 8, DeployInputs(batch_size=2), Fusion(kind, num_output=16)),
                    tmp_path / "fusion.prototxt")
    out = tmp_path / "out" / "init.caffemodel"
    records = init_fusion(fusion, spatial_model, temporal_model, out)
    layers = TOWER + (["fc6", "fc7"] if kind == "mfuse_fc7" else [])
    net = caffe.Net(str(fusion), str(out), caffe.TEST)
    for layer in layers:
        for prefix, stream in (("rgb_", spatial), ("flow_", temporal)):
            for got, want in zip(net.params[prefix + layer], stream.params[layer]):
                np.testing.assert_array_equal(got.data, want.data)
    status = {record.target or record.source: record.status for record in records}
    assert all(status[p + layer] == COPIED for layer in layers for p in ("rgb_", "flow_"))
    assert status["cons_fc8"] == SKIPPED
    assert status[f"{spatial_model}:fc8_action"] == UNUSED
    assert "rgb_conv1" in format_report(records)


def test_fusion_init_refuses_swapped_sources_and_writes_nothing(tmp_path, streams):
    (_, spatial_model, _), (_, temporal_model, _) = streams
    fusion = _write(fusion_net("tiny", "tiny", 8, DeployInputs(), Fusion("baseline_a")), tmp_path / "f.prototxt")
    out = tmp_path / "init.caffemodel"
    with pytest.raises(SurgeryError) as error:
        init_fusion(fusion, temporal_model, spatial_model, out)
    message = str(error.value)
    assert "rgb_conv1" in message and "flow_conv1" in message and str(temporal_model) in message
    assert "16x20x5x5" in message and "16x3x5x5" in message
    assert "rgb_conv2" not in message  # only the layers that do not fit
    assert not out.exists() and not list(tmp_path.glob(".init*"))


def test_fusion_init_refuses_an_incomplete_tower(tmp_path, streams):
    (_, spatial_model, _), (_, temporal_model, _) = streams
    model = caffe_pb2.NetParameter.FromString(spatial_model.read_bytes())
    kept = [layer for layer in model.layer if layer.name != "conv4"]
    del model.layer[:]
    model.layer.extend(kept)
    partial = tmp_path / "partial.caffemodel"
    partial.write_bytes(model.SerializeToString())
    fusion = _write(fusion_net("tiny", "tiny", 8, DeployInputs(), Fusion("baseline_a")), tmp_path / "f.prototxt")
    with pytest.raises(SurgeryError, match=r"rgb_conv4 .*missing.*no layer conv4 in .*partial.caffemodel"):
        init_fusion(fusion, partial, temporal_model, tmp_path / "init.caffemodel")


def test_imagenet_init_with_cross_modality(tmp_path, streams):
    (_, imagenet_model, imagenet), _ = streams
    temporal = _write(temporal_net("tiny", 8, DeployInputs(batch_size=1)), tmp_path / "t.prototxt")
    with pytest.raises(SurgeryError, match=r"conv1 <- .*spatial.caffemodel:conv1: mismatch: target 16x20x5x5, 16 <- source 16x3x5x5, 16"):
        init_from_imagenet(temporal, imagenet_model, tmp_path / "no.caffemodel")
    records = init_from_imagenet(temporal, imagenet_model, tmp_path / "t.caffemodel", cross_modality=True)
    net = caffe.Net(str(temporal), str(tmp_path / "t.caffemodel"), caffe.TEST)
    rgb = imagenet.params["conv1"][0].data
    expected = np.repeat(rgb.mean(axis=1, keepdims=True), 20, axis=1)
    np.testing.assert_allclose(net.params["conv1"][0].data, expected, rtol=1e-6)
    np.testing.assert_array_equal(net.params["conv1"][1].data, imagenet.params["conv1"][1].data)
    np.testing.assert_array_equal(net.params["fc7"][0].data, imagenet.params["fc7"][0].data)
    status = {record.target: record.status for record in records if record.target}
    assert status["conv1"] == ADAPTED and status["conv2"] == COPIED


def test_legacy_v1_caffemodels_are_read(tmp_path, streams):
    """The published ImageNet models use V1 ``layers`` with num/channels/height/width blobs."""
    (spatial_proto, _, spatial), _ = streams
    legacy = caffe_pb2.NetParameter()
    for name, blobs in spatial.params.items():
        layer = legacy.layers.add(name=name)
        for blob in blobs:
            shape = (1,) * (4 - blob.data.ndim) + blob.data.shape
            stored = layer.blobs.add(num=shape[0], channels=shape[1], height=shape[2], width=shape[3])
            stored.data.extend(blob.data.ravel().tolist())
    path = tmp_path / "legacy.caffemodel"
    path.write_bytes(legacy.SerializeToString())
    assert read_caffemodel(path)["fc6"].blobs[0].shape == (1, 1) + spatial.params["fc6"][0].data.shape
    init_from_imagenet(spatial_proto, path, tmp_path / "copy.caffemodel")
    net = caffe.Net(str(spatial_proto), str(tmp_path / "copy.caffemodel"), caffe.TEST)
    np.testing.assert_array_equal(net.params["fc6"][0].data, spatial.params["fc6"][0].data)


def test_bad_files_are_named(tmp_path, streams):
    (spatial_proto, _, _), _ = streams
    with pytest.raises(SurgeryError, match="missing.caffemodel does not exist"):
        read_caffemodel(tmp_path / "missing.caffemodel")
    with pytest.raises(SurgeryError, match="spatial.prototxt is not a caffemodel"):
        read_caffemodel(spatial_proto)
    (tmp_path / "empty.caffemodel").write_bytes(b"")
    with pytest.raises(SurgeryError, match="empty.caffemodel holds no layer with weights"):
        read_caffemodel(tmp_path / "empty.caffemodel")
    (tmp_path / "junk.caffemodel").write_bytes(b"\xff\xff\xff\xff")
    with pytest.raises(SurgeryError, match="junk.caffemodel is not a caffemodel"):
        read_caffemodel(tmp_path / "junk.caffemodel")


@pytest.mark.parametrize("after", ["conv5", "relu5", "conv3"])
def test_inserted_amplification_with_zero_magnitude_changes_nothing(tmp_path, streams, after):
    (spatial_proto, spatial_model, original), _ = streams
    out_proto, out_model = tmp_path / "amp.prototxt", tmp_path / "amp.caffemodel"
    insert_flow_amplify(spatial_proto, spatial_model, after, out_proto, out_model)
    amplified = caffe.Net(str(out_proto), str(out_model), caffe.TEST)
    image = np.random.default_rng(3).normal(0, 50, original.blobs["data_rgb"].data.shape)
    original.blobs["data_rgb"].data[...] = image
    reference = original.forward()["prob"].copy()
    amplified.blobs["data_rgb"].data[...] = image
    side = original.blobs["data_rgb"].data.shape[-1]  # the tiny backbone's crop
    assert amplified.blobs["data_mag"].data.shape == (2, 1, side, side)
    amplified.blobs["data_mag"].data[...] = 0
    assert np.array_equal(amplified.forward()["prob"], reference)
    amplified.blobs["data_mag"].data[...] = np.random.default_rng(4).uniform(0, 20, (2, 1, side, side))
    assert not np.allclose(amplified.forward()["prob"], reference)  # the gate is in the path


def test_amplified_prototxt_rewires_later_readers():
    deploy = spatial_net("tiny", 8, DeployInputs(batch_size=2))
    net = amplified_prototxt(deploy, "conv5", flow_amplify_param=dict(offset=1, scale=0.5))
    layers = {layer.name: layer for layer in net.layer}
    assert [layer.name for layer in net.layer[:2]] == ["data_rgb", "data_mag"]
    assert list(layers["flow_amplify"].bottom) == ["conv5", "data_mag"]
    assert layers["flow_amplify"].flow_amplify_param.scale == 0.5
    assert list(layers["relu5"].bottom) == list(layers["relu5"].top) == ["conv5_amp"]
    assert list(layers["pool5"].bottom) == ["conv5_amp"]
    side = get_backbone("tiny").crop_size
    assert list(layers["data_mag"].input_param.shape[0].dim) == [2, 1, side, side]


def test_amplified_prototxt_errors():
    deploy = spatial_net("tiny", 8, DeployInputs())
    with pytest.raises(SurgeryError, match="no layer 'conv9'"):
        amplified_prototxt(deploy, "conv9")
    with pytest.raises(SurgeryError, match="already has a blob called 'conv1'"):
        amplified_prototxt(deploy, "conv5", magnitude_top="conv1")
    legacy = caffe_pb2.NetParameter()
    legacy.layers.add(name="conv1")
    with pytest.raises(SurgeryError, match="upgrade_net_proto_text"):
        amplified_prototxt(legacy, "conv1")


def test_cli_reports_errors_without_a_traceback(tmp_path, streams):
    (spatial_proto, spatial_model, _), _ = streams
    result = subprocess.run([sys.executable, str(REPO / "tools" / "surgery.py"), "insert-amplify",
                             str(spatial_proto), str(spatial_model), "--after", "conv9", "--out-prototxt",
                             str(tmp_path / "a.prototxt"), "--out-caffemodel", str(tmp_path / "a.caffemodel")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "surgery failed: no layer 'conv9'" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "a.prototxt").exists()


def _without(caffemodel, tmp_path, names, rename=False):
    """A copy of ``caffemodel`` without the layers ``names`` (or with them renamed ``other_<name>``)."""
    model = caffe_pb2.NetParameter.FromString(caffemodel.read_bytes())
    kept = []
    for layer in model.layer:
        if layer.name in names and rename:
            layer.name = f"other_{layer.name}"
        if layer.name not in names:
            kept.append(layer)
    del model.layer[:]
    model.layer.extend(kept)
    path = tmp_path / f"{caffemodel.stem}_edited.caffemodel"
    path.write_bytes(model.SerializeToString())
    return path


def test_imagenet_init_refuses_a_model_of_which_nothing_fits(tmp_path, streams):
    (spatial_proto, spatial_model, spatial), _ = streams
    unrelated = _without(spatial_model, tmp_path, set(spatial.params), rename=True)
    out = tmp_path / "out.caffemodel"
    with pytest.raises(SurgeryError, match=r"nothing of .*_edited.caffemodel fits .*spatial.prototxt: no layer of "
                                           r"the net \(conv1, .*fc8_action\) is in it \(its layers: other_conv1"):
        init_from_imagenet(spatial_proto, unrelated, out, allow_partial=True)
    assert not out.exists()
    result = subprocess.run([sys.executable, str(REPO / "tools" / "surgery.py"), "imagenet-init", str(spatial_proto),
                             "--imagenet", str(unrelated), "--out", str(out)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1 and "surgery failed: nothing of" in result.stderr and not out.exists()


def test_imagenet_init_needs_allow_partial_when_layers_besides_the_classifier_are_missing(tmp_path, streams):
    (spatial_proto, spatial_model, spatial), _ = streams
    partial = _without(spatial_model, tmp_path, {"conv4", "fc8_action"})
    out = tmp_path / "out.caffemodel"
    with pytest.raises(SurgeryError, match=r"lacks 1 layer\(s\) of .*: conv4 \(only the classifier fc8_action is "
                                           r"expected to be new\)"):
        init_from_imagenet(spatial_proto, partial, out)
    assert not out.exists()
    records = init_from_imagenet(spatial_proto, partial, out, allow_partial=True)
    assert {r.target: r.status for r in records}["conv4"] == SKIPPED
    without_classifier = _without(spatial_model, tmp_path, {"fc8_action"})
    init_from_imagenet(spatial_proto, without_classifier, out)  # a new classifier is what imagenet-init expects


def test_written_models_hold_the_copied_layers_only_so_a_second_init_is_identical(tmp_path, streams):
    """The fusion layers are left to the seeded solver: the unseeded fillers of this process never reach the
    file, so two inits of the same sources give the same bytes."""
    (_, spatial_model, _), (_, temporal_model, _) = streams
    fusion = _write(fusion_net("tiny", "tiny", 8, DeployInputs(), Fusion("mfuse_conv5", num_output=16)),
                    tmp_path / "fusion.prototxt")
    init_fusion(fusion, spatial_model, temporal_model, tmp_path / "a.caffemodel")
    init_fusion(fusion, spatial_model, temporal_model, tmp_path / "b.caffemodel")
    assert (tmp_path / "a.caffemodel").read_bytes() == (tmp_path / "b.caffemodel").read_bytes()
    saved = read_caffemodel(tmp_path / "a.caffemodel")
    assert sorted(saved) == sorted(p + layer for layer in TOWER for p in ("rgb_", "flow_"))


def test_insert_amplify_that_fails_writes_neither_output(tmp_path, streams):
    (spatial_proto, spatial_model, _), _ = streams
    incomplete = _without(spatial_model, tmp_path, {"fc7"})
    out_proto, out_model = tmp_path / "amp.prototxt", tmp_path / "amp.caffemodel"
    with pytest.raises(SurgeryError, match=r"fc7 <- .*_edited.caffemodel:fc7: missing"):
        insert_flow_amplify(spatial_proto, incomplete, "conv5", out_proto, out_model)
    assert sorted(tmp_path.iterdir()) == sorted(
        [spatial_proto, spatial_model, incomplete] + list(tmp_path.glob("temporal.*")))


def test_a_seeded_fusion_run_is_reproducible_bit_for_bit(tmp_path, streams, tiny_data_root):
    """Issue 20, item 16: fusion init + ``caffe train`` twice with the same seed gives the same weights.

    The fusion layers (``mfuse``, ``cons_*``) are not in the init caffemodel: the seeded solver fills them.
    """
    from dataclasses import replace

    from mfuse.nets.build_all import COMMITTED, custom_set, write_all
    from mfuse.training import train

    (_, spatial_model, _), (_, temporal_model, _) = streams
    trained = {}
    for run in ("a", "b"):
        folder = tmp_path / run
        net_set = custom_set("tiny", COMMITTED["tiny"].num_classes, str(tiny_data_root), runs_dir=str(folder / "runs"),
                             seed=7)
        net_set = replace(net_set, fusion_schedule=replace(net_set.fusion_schedule, max_iter=4, steps=(2,),
                                                           snapshot=4, test_interval=40))
        write_all(folder / "prototxt", [net_set])
        init = folder / "init.caffemodel"
        init_fusion(folder / "prototxt" / "mfuse_conv5_deploy.prototxt", spatial_model, temporal_model, init)
        final = train(folder / "prototxt" / "mfuse_conv5_solver.prototxt", folder / "train.log", weights=init,
                      cwd=folder, progress=False)
        trained[run] = read_caffemodel(final)
    assert sorted(trained["a"]) == sorted(trained["b"])
    for name, layer in trained["a"].items():
        for index, (x, y) in enumerate(zip(layer.blobs, trained["b"][name].blobs)):
            assert x.tobytes() == y.tobytes(), f"{name} blob {index} differs between two seeded runs"
    assert "mfuse" in trained["a"] and "mfuse" not in read_caffemodel(tmp_path / "a" / "init.caffemodel")
