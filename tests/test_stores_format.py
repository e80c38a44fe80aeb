"""The frame-store format: names, keys, Datum encoding, the index and its JSON."""
import json

import cv2
import numpy as np
import pytest

from mfuse.stores.format import (INDEX_VERSION, StoreIndex, VideoEntry, caffe_pb2, database_name, decode_image,
                                 frame_key, image_name, image_shape, make_datum, modality_image_name, parse_datum,
                                 rgb_frame_count)


def test_names_and_keys_follow_the_conventions():
    assert database_name(2, "test", "flow") == "split2_test_flow"
    with pytest.raises(ValueError, match="modality must be one of"):
        database_name(1, "train", "depth")
    assert frame_key("B/v b é", 7) == "B/v b é/00007".encode("utf-8")
    assert image_name("flow_x", 12) == "flow_x_00012.jpg"
    assert [modality_image_name(m, 3) for m in ("rgb", "flow", "mag")] == ["img_00003.jpg", "flow_00003.jpg",
                                                                            "mag_00003.jpg"]
    assert [image_shape(m, 24, 32) for m in ("rgb", "flow", "mag")] == [(3, 24, 32), (1, 24, 64), (1, 24, 32)]
    assert [rgb_frame_count(m, 9) for m in ("rgb", "flow", "mag")] == [9, 10, 10]


def test_datum_round_trip_keeps_the_jpeg_bytes():
    image = np.arange(24 * 32 * 3, dtype=np.uint8).reshape(24, 32, 3)
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    assert parse_datum(make_datum(jpeg, 5, (3, 24, 32))) == (jpeg, 5, (3, 24, 32))
    np.testing.assert_array_equal(decode_image(jpeg, "rgb"), cv2.imdecode(np.frombuffer(jpeg, np.uint8), 1))
    assert decode_image(jpeg, "mag").shape == (24, 32)
    with pytest.raises(ValueError, match="cannot decode a flow JPEG of 3 bytes"):
        decode_image(b"abc", "flow")


def test_the_wire_reader_reads_what_caffe_writes_and_refuses_the_rest():
    """parse_datum reads the protobuf wire format itself (no pycaffe in the data workers): every field Caffe may
    write, in any order, unknown fields skipped; anything else is a ValueError saying it is no Datum."""
    Datum = caffe_pb2().Datum
    cases = [Datum(channels=3, height=256, width=340, data=bytes(range(256)) * 40, label=100, encoded=True),
             Datum(channels=1, height=2, width=4, data=b"x", label=-7, encoded=True, float_data=[1.5, -2.0]),
             Datum(data=b"", label=0, encoded=True)]
    for datum in cases:
        expected = (datum.data, datum.label, (datum.channels, datum.height, datum.width))
        assert parse_datum(datum.SerializeToString()) == expected
    reordered = Datum(encoded=True, label=4).SerializeToString() + Datum(data=b"jpg").SerializeToString()
    assert parse_datum(reordered) == (b"jpg", 4, (0, 0, 0))
    with pytest.raises(ValueError, match="Datum is not encoded"):
        parse_datum(Datum(data=b"raw pixels").SerializeToString())
    for garbage in (b"garbage, not a Datum", b"\x08", b"\x22\x05ab", b"\x0d\x00", b"\x22\x01a\x28"):
        with pytest.raises(ValueError, match=f"a value of {len(garbage)} bytes that is not a serialized caffe.Datum"):
            parse_datum(garbage)


def test_index_json_round_trip_and_lookups():
    index = StoreIndex("ucf101", 1, "test", "mag", ["A", "B"], [VideoEntry("A/a", 0, 4), VideoEntry("B/b", 1, 6)],
                       {"flow_algorithm": "dis"})
    data = json.loads(index.to_bytes())
    assert data["version"] == INDEX_VERSION and data["videos"][1] == {"video_id": "B/b", "label": 1, "num_frames": 6}
    again = StoreIndex.from_json(data)
    assert again.to_json() == index.to_json() and again.video("B/b").num_frames == 6
    with pytest.raises(KeyError, match="'C/c' is not in the mag store of ucf101 split 1 test"):
        index.video("C/c")
    with pytest.raises(ValueError, match="unsupported frame-store index version 2"):
        StoreIndex.from_json(dict(data, version=2))
