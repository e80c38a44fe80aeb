"""Frame positions of a video: where training and testing take their samples (paper §5.2).

Indices are 1-based, as the frame files (``img_00001.jpg``, ``flow_00001.jpg``). A video of ``N`` RGB frames
has ``N - 1`` flow and magnitude images; a sample at position ``t`` uses the flow stack ``t .. t+L-1``
(``L = stack_length``, 10 in the paper), which must end at or before ``N - 1``, so ``1 <= t <= N - L``.

Testing (:func:`sample_positions`: 25 equally spaced frames per video). Authors' rule: ``gap = floor((N - L)
/ 25)`` and positions ``t_i = 1 + i * gap`` for ``i = 0 .. 24``. Short videos, where ``gap`` would be 0 (``N - L < 25``): the positions are ``round(linspace(1, N - L, 25))``,
still 25 of them, some repeated, so every video is scored by the same number of samples. Videos with no
full stack (``N - L < 1``): every position is 1, and ``flow_stack_indices`` repeats the last flow image to
fill the stack (the same clamping the data layer applies to ``short_for_stack`` videos).

Use the same ``stack_length`` for every stream of a comparison (also for a spatial-only net), so that all
streams are scored on the same frames.

Training (:func:`frame_range`, :func:`train_position`): with flow among the modalities, ``t`` is drawn
uniformly from ``1 .. max(1, n_flow - L + 1)`` (a video with fewer than ``L`` flow images has its stack padded
by repeating its last flow image: such videos are kept, the data preparation flags them); without flow, ``t``
runs over the images every requested modality has. Deterministic mode (no random generator, for validation):
``t`` is the middle of the valid range.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mfuse.conventions import STACK_LENGTH

NUM_TEST_SAMPLES = 25


def sample_positions(num_frames: int, num_samples: int = NUM_TEST_SAMPLES,
                     stack_length: int = STACK_LENGTH) -> np.ndarray:
    """``num_samples`` 1-based start positions (int64 array, non-decreasing) for a video of ``num_frames``
    RGB frames; see the module docstring for the rule and the short-video behaviour."""
    if num_frames < 2:
        raise ValueError(f"a video needs at least 2 frames (1 flow image) to be sampled, got {num_frames}")
    if num_samples < 1 or stack_length < 1:
        raise ValueError(f"num_samples and stack_length must be >= 1, got {num_samples}, {stack_length}")
    last_start = num_frames - stack_length
    gap = last_start // num_samples if last_start > 0 else 0
    if gap >= 1:
        return 1 + gap * np.arange(num_samples, dtype=np.int64)
    return np.rint(np.linspace(1, max(last_start, 1), num_samples)).astype(np.int64)


def flow_stack_indices(start: int, num_flow: int, stack_length: int = STACK_LENGTH) -> np.ndarray:
    """1-based indices of the flow (or magnitude) images of the stack that starts at ``start``:
    ``start .. start + stack_length - 1``, clamped to ``num_flow`` (the last image is repeated)."""
    if num_flow < 1:
        raise ValueError(f"a flow stack needs at least 1 flow image, got num_flow={num_flow}")
    if not 1 <= start <= num_flow:
        raise ValueError(f"stack start {start} outside 1..{num_flow}")
    return np.minimum(start + np.arange(stack_length, dtype=np.int64), num_flow)


def rgb_index(start: int, num_frames: int, stack_length: int = STACK_LENGTH, centre: bool = False) -> int:
    """1-based RGB frame paired with the stack at ``start``: ``start`` itself (training convention), or with
    ``centre=True`` the middle of the stack, ``start + stack_length // 2`` (the authors' fusion test),
    clamped to ``num_frames``."""
    if not 1 <= start <= num_frames:
        raise ValueError(f"start {start} outside 1..{num_frames}")
    return int(min(start + stack_length // 2, num_frames)) if centre else int(start)


def frame_range(counts: Mapping[str, int], stack_length: int = STACK_LENGTH) -> int:
    """The number of valid training start frames ``t`` (``t`` in ``1 .. result``) of a video.

    ``counts``: images per modality of the video. Raises ValueError if a modality has no image.
    """
    if min(counts.values()) < 1:
        raise ValueError(f"a modality has no image: {dict(counts)}")
    last = min(counts.values())
    if "flow" in counts:
        last = max(1, counts["flow"] - stack_length + 1)
        if "rgb" in counts or "mag" in counts:
            last = min(last, *(counts[m] for m in counts if m != "flow"))
    return last


def train_position(valid: int, rng: np.random.RandomState | None) -> int:
    """A training start frame in ``1 .. valid``: uniform, or the middle one when ``rng`` is None."""
    return valid // 2 + 1 if rng is None else int(rng.randint(1, valid + 1))
