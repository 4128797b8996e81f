import logging

import numpy as np
import pytest
from PIL import Image

from convlstm.data.core.scene_cuts import find_scene_cuts, frame_differences, split_at_scene_cuts
from convlstm.data.core.windows import Recording

SIZE = 32


def texture(seed: int, size: int = SIZE) -> np.ndarray:
    """A smooth random RGB picture (H, W, 3) uint8, like a blurred photograph: coarse noise scaled up bicubically."""
    coarse = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC))


def blob_scene(frames: int, seed: int) -> np.ndarray:
    """(T, 3, H, W) uint8: a bright disc moving 1 pixel a frame across a still background."""
    background = texture(seed)
    rows, cols = np.mgrid[:SIZE, :SIZE]
    video = []
    for t in range(frames):
        frame = background.copy()
        frame[(rows - SIZE / 2) ** 2 + (cols - 4 - t) ** 2 < 16] = 250
        video.append(frame)
    return np.stack(video).transpose(0, 3, 1, 2)


def two_scenes(first: int = 20, second: int = 20) -> np.ndarray:
    """(first + second, 3, H, W) uint8: a moving blob on one background, then, from frame `first`, another."""
    return np.concatenate([blob_scene(first, seed=1), blob_scene(second, seed=2)])


def pan(frames: int, pixels_per_frame: int) -> np.ndarray:
    """(T, 3, H, W) uint8: the camera panning across a wide picture."""
    wide = texture(3, size=SIZE + frames * pixels_per_frame)[:SIZE]
    shots = [wide[:, t * pixels_per_frame : t * pixels_per_frame + SIZE] for t in range(frames)]
    return np.stack(shots).transpose(0, 3, 1, 2)


def test_a_hard_cut_is_found_at_the_first_frame_of_the_new_scene() -> None:
    assert find_scene_cuts(two_scenes()) == [20]
    assert find_scene_cuts(two_scenes(7, 30)) == [7]


def test_float_frames_in_0_1_give_the_cuts_of_uint8_frames() -> None:
    video = two_scenes()
    np.testing.assert_allclose(frame_differences(video.astype(np.float32) / 255), frame_differences(video), atol=1e-6)
    assert find_scene_cuts(video.astype(np.float64) / 255) == [20]


@pytest.mark.parametrize(
    "video",
    [
        pytest.param(blob_scene(40, seed=1), id="moving-object"),
        pytest.param(pan(40, pixels_per_frame=1), id="slow-pan"),
        pytest.param(pan(40, pixels_per_frame=3), id="fast-pan"),
        pytest.param(
            (blob_scene(40, seed=1) * np.linspace(0.4, 1.0, 40)[:, None, None, None]).astype(np.uint8),
            id="brightness-ramp",
        ),
        pytest.param(
            blob_scene(40, seed=1) // 2 + np.where(np.arange(40) < 20, 0, 60).astype(np.uint8)[:, None, None, None],
            id="exposure-step",
        ),
        pytest.param(
            np.random.default_rng(0).integers(0, 256, (40, 3, SIZE, SIZE), dtype=np.uint8), id="noise-every-frame"
        ),
    ],
)
def test_motion_brightness_and_noise_are_no_cut(video: np.ndarray) -> None:
    assert find_scene_cuts(video) == []


def test_threshold_and_factor_decide() -> None:
    video = two_scenes()
    jump = frame_differences(video)[19]
    assert find_scene_cuts(video, threshold=jump * 0.99) == [20]
    assert find_scene_cuts(video, threshold=jump * 1.01) == []
    assert find_scene_cuts(video, threshold=0.0, factor=0.0) == list(range(1, 40))  # every change
    assert find_scene_cuts(video[:3], threshold=0.0) == []  # the cut itself would be the median


def test_lazy_frames_are_read_in_chunks() -> None:
    video = two_scenes(30, 30)
    reads: list[int] = []

    class Lazy:
        shape = video.shape

        def __getitem__(self, time: slice) -> np.ndarray:
            reads.append(len(video[time]))
            return video[time]

    assert find_scene_cuts(Lazy()) == [30]
    assert max(reads) < len(video) and sum(reads) == len(video)  # each frame once


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda v: find_scene_cuts(v, threshold=-0.1), r"threshold must be a finite number >= 0, got -0\.1"),
        (lambda v: find_scene_cuts(v, factor=float("nan")), "factor must be a finite number >= 0, got nan"),
        (lambda v: find_scene_cuts(v[:, 0]), r"4 dimensions \(T, C, H, W\), got shape \(40, 32, 32\)"),
        (lambda v: find_scene_cuts(v.astype(np.int32)), "uint8 .* or floating point .*, got dtype int32"),
    ],
)
def test_bad_arguments_are_named(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(two_scenes())  # type: ignore[operator]


def test_split_counts_the_windows_that_spanned_a_cut(caplog: pytest.LogCaptureFixture) -> None:
    whole = Recording("clip", two_scenes(12, 12))
    plain = Recording("still", blob_scene(10, seed=3))
    with caplog.at_level(logging.INFO):
        cut = split_at_scene_cuts([whole, plain], window_frames=5, stride=1, what="clips")
    assert [(r.name, r.num_frames) for r in cut.recordings] == [("clip[0:12]", 12), ("clip[12:24]", 12), ("still", 10)]
    assert cut.cuts == {"clip": [12]}
    # Windows start at 0..19 in clip and 0..5 in still; those starting at 8..11 hold frames 11 and 12.
    assert (cut.windows_before, cut.dropped_windows) == (20 + 6, 4)
    assert "scene cuts: 1 in 1 of 2 clips" in caplog.text and "4 of their 26 windows" in caplog.text


def test_split_with_a_stride_counts_only_the_windows_it_had() -> None:
    cut = split_at_scene_cuts([Recording("clip", two_scenes(12, 12))], window_frames=5, stride=3, what="clips")
    assert (cut.windows_before, cut.dropped_windows) == (7, 1)  # starts 0, 3, ..., 18; only 9 spans frame 12


def test_parts_shorter_than_a_window_are_left_out_and_an_empty_result_is_refused() -> None:
    cut = split_at_scene_cuts([Recording("clip", two_scenes(3, 12))], window_frames=5, stride=1, what="clips")
    assert [r.name for r in cut.recordings] == ["clip[3:15]"]
    with pytest.raises(ValueError, match=r"no window of 5 frames is left in the 1 clips .* 1 scene cuts"):
        split_at_scene_cuts([Recording("clip", two_scenes(4, 4))], window_frames=5, stride=1, what="clips")


def test_recordings_too_short_for_a_window_are_passed_on_untouched() -> None:
    short = Recording("short", two_scenes(2, 2))
    cut = split_at_scene_cuts([short], window_frames=5, stride=1, what="clips")
    assert cut.recordings == [short] and cut.cuts == {}  # the window dataset reports it, as without cuts
