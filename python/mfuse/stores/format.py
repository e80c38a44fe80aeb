"""The frame-store format: what the writers (:mod:`mfuse.prep.lmdb_store`) write and the reader
(:mod:`mfuse.stores.reader`) reads (docs/conventions.md).

One store per (dataset, split, subset, modality), named ``split<k>_<subset>_<modality>``:

- LMDB: ``<out>/lmdb/<name>/``; key ``<video_id>/<t:05d>`` (UTF-8, t 1-based as the file number) ->
  serialized ``caffe.Datum`` with ``encoded = true``, ``data`` = the JPEG file's bytes, ``label`` and the
  decoded image's ``channels/height/width`` (rgb 3 x H x W, flow 1 x H x 2W, mag 1 x H x W); key
  ``__index__`` -> UTF-8 JSON of :class:`StoreIndex`.
- Folder: the images stay in ``<out>/frames/<video_id>/``; the same index is written as
  ``<out>/lists/<name>.json`` (plus ``"frames_root"``, relative to the JSON file).

:class:`StoreIndex` JSON: ``{"version": 1, "dataset", "split", "subset", "modality", "classes": [...],
"videos": [{"video_id", "label", "num_frames"}], "extract_settings": {...}}``; ``num_frames`` counts the
images of that modality (N for rgb, N-1 for flow and mag).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from types import ModuleType

import cv2
import numpy as np

from mfuse.conventions import IMAGE_PREFIXES, MODALITIES

INDEX_KEY = b"__index__"
INDEX_VERSION = 1


def caffe_pb2() -> ModuleType:
    """Caffe's protobuf module (``caffe.proto.caffe_pb2``), imported on first use.

    Importing it runs ``caffe/__init__``, so pycaffe must be built (tools/setup.sh).
    """
    try:
        from caffe.proto import caffe_pb2 as module
    except ImportError as error:
        raise ImportError("the LMDB store needs pycaffe's caffe.proto.caffe_pb2 (run tools/setup.sh, "
                          f"or put a built pycaffe on PYTHONPATH): {error}") from error
    return module


def database_name(split: int, subset: str, modality: str) -> str:
    """``split<k>_<subset>_<modality>``: the folder name of a database (and of a folder index)."""
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    return f"split{split}_{subset}_{modality}"


def image_name(kind: str, t: int) -> str:
    """File name of image ``t`` (1-based) of ``kind`` (``img``, ``flow``, ``flow_x``, ``flow_y``, ``mag``)."""
    return f"{kind}_{t:05d}.jpg"


def modality_image_name(modality: str, t: int) -> str:
    """File name of image ``t`` of a modality's images in a frame folder (``img_00001.jpg`` for rgb)."""
    return image_name(IMAGE_PREFIXES[modality], t)


def rgb_frame_count(modality: str, num_images: int) -> int:
    """N, the RGB frame count of a video whose ``modality`` store holds ``num_images`` images (rgb stores hold
    N frames, flow and mag stores N - 1 images)."""
    return num_images if modality == "rgb" else num_images + 1


def frame_key(video_id: str, t: int) -> bytes:
    """The LMDB key of image ``t`` (1-based) of ``video_id``."""
    return f"{video_id}/{t:05d}".encode("utf-8")


def image_shape(modality: str, height: int, width: int) -> tuple[int, int, int]:
    """``(channels, height, width)`` of a decoded image of ``modality`` for frames of ``height x width``."""
    return {"rgb": (3, height, width), "flow": (1, height, 2 * width), "mag": (1, height, width)}[modality]


def make_datum(jpeg: bytes, label: int, shape: tuple[int, int, int]) -> bytes:
    """Serialized encoded ``Datum`` holding ``jpeg`` with ``label`` and ``shape = (C, H, W)``."""
    datum = caffe_pb2().Datum(channels=shape[0], height=shape[1], width=shape[2], data=jpeg,
                              label=int(label), encoded=True)
    return datum.SerializeToString()


#: ``Datum`` fields (caffe.proto) the reader uses: number -> name; every one a varint but ``data`` (bytes).
_DATUM_FIELDS = {1: "channels", 2: "height", 3: "width", 4: "data", 5: "label", 7: "encoded"}
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def _varint(value: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(value) or shift > 63:
            raise ValueError("a truncated or overlong varint")
        byte = value[pos]
        result |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return result, pos


def parse_datum(value: bytes) -> tuple[bytes, int, tuple[int, int, int]]:
    """``(jpeg bytes, label, (C, H, W))`` of a serialized encoded ``Datum``; ValueError for anything else.

    Reads the protobuf wire format of ``caffe.Datum`` directly (fields 1-5 and 7; others, such as
    ``float_data``, are skipped), so readers need neither pycaffe nor its import time: the data workers
    import only numpy, OpenCV and LMDB. ``make_datum`` writes with Caffe's own message class, and the tests
    read those bytes back with both.
    """
    fields = {"channels": 0, "height": 0, "width": 0, "data": b"", "label": 0, "encoded": 0}
    pos = 0
    try:
        while pos < len(value):
            key, pos = _varint(value, pos)
            number, wire = key >> 3, key & 7
            if wire == _VARINT:
                item, pos = _varint(value, pos)
            elif wire == _BYTES:
                size, pos = _varint(value, pos)
                if pos + size > len(value):
                    raise ValueError(f"field {number} runs past the end")
                item, pos = value[pos:pos + size], pos + size
            elif wire in (_FIXED64, _FIXED32):
                pos += 8 if wire == _FIXED64 else 4
                item = None
            else:
                raise ValueError(f"wire type {wire} at byte {pos}")
            name = _DATUM_FIELDS.get(number)
            if name is not None:
                if (wire == _BYTES) != (name == "data") or wire not in (_VARINT, _BYTES):
                    raise ValueError(f"field {number} ({name}) has wire type {wire}")
                fields[name] = item
        if pos != len(value):
            raise ValueError("a field runs past the end")
    except ValueError as error:
        raise ValueError(f"a value of {len(value)} bytes that is not a serialized caffe.Datum ({error})") from None
    if not fields["encoded"]:
        raise ValueError("Datum is not encoded (expected JPEG bytes with encoded = true)")
    label = fields["label"] - (1 << 64) if fields["label"] >= 1 << 63 else fields["label"]   # int32 is sign-extended
    return bytes(fields["data"]), label, (fields["channels"], fields["height"], fields["width"])


def decode_image(jpeg: bytes, modality: str) -> np.ndarray:
    """Decode JPEG bytes: rgb -> ``(H, W, 3)`` BGR uint8, flow/mag -> ``(H, W')`` uint8."""
    flag = cv2.IMREAD_COLOR if modality == "rgb" else cv2.IMREAD_GRAYSCALE
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), flag)
    if image is None:
        raise ValueError(f"cannot decode a {modality} JPEG of {len(jpeg)} bytes")
    return image


@dataclass(frozen=True)
class VideoEntry:
    """One video of a store: id, 0-based label and the number of images of the store's modality."""

    video_id: str
    label: int
    num_frames: int


@dataclass
class StoreIndex:
    """The index of one (dataset, split, subset, modality) store."""

    dataset: str
    split: int
    subset: str
    modality: str
    classes: list[str]
    videos: list[VideoEntry]
    extract_settings: dict = field(default_factory=dict)

    def __post_init__(self):
        self._by_id = {v.video_id: v for v in self.videos}

    def video(self, video_id: str) -> VideoEntry:
        """The entry of ``video_id``; ``KeyError`` naming it if the store does not have it."""
        try:
            return self._by_id[video_id]
        except KeyError:
            raise KeyError(f"video {video_id!r} is not in the {self.modality} store of "
                           f"{self.dataset} split {self.split} {self.subset}") from None

    def to_json(self) -> dict:
        return {"version": INDEX_VERSION, "dataset": self.dataset, "split": self.split,
                "subset": self.subset, "modality": self.modality, "classes": list(self.classes),
                "videos": [asdict(v) for v in self.videos], "extract_settings": self.extract_settings}

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), ensure_ascii=False, sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, data: dict) -> StoreIndex:
        if data.get("version") != INDEX_VERSION:
            raise ValueError(f"unsupported frame-store index version {data.get('version')!r}")
        return cls(dataset=data["dataset"], split=int(data["split"]), subset=data["subset"],
                   modality=data["modality"], classes=list(data["classes"]),
                   videos=[VideoEntry(v["video_id"], int(v["label"]), int(v["num_frames"]))
                           for v in data["videos"]],
                   extract_settings=data.get("extract_settings", {}))
