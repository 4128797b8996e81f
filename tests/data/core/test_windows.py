import logging

import numpy as np
import pytest
import torch

from convlstm.data.core.windows import Recording, WindowDataset


def ramp(length: int, offset: float = 0.0, channels: int = 1, size: int = 4) -> np.ndarray:
    """(T, C, H, W) frames whose every pixel holds offset + frame index."""
    values = offset + np.arange(length, dtype=np.float32)
    return np.broadcast_to(values[:, None, None, None], (length, channels, size, size)).copy()


def expected_starts(lengths: list[int], window: int, stride: int) -> list[tuple[int, int]]:
    return [(r, s) for r, n in enumerate(lengths) for s in range(n - window + 1) if s % stride == 0]


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_windows_never_cross_recordings(stride: int) -> None:
    lengths = [7, 5, 9]
    recordings = [Recording(f"r{i}", ramp(n, offset=100 * i)) for i, n in enumerate(lengths)]
    data = WindowDataset(recordings, context_frames=2, target_frames=2, stride=stride)
    expected = expected_starts(lengths, 4, stride)
    assert len(data) == len(expected)
    for index, (r, start) in enumerate(expected):
        item = data[index]
        frames = torch.cat([item["context"], item["target"]])[:, 0, 0, 0]
        assert frames.tolist() == [100 * r + start + t for t in range(4)]


def test_item_layout_and_dtype() -> None:
    data = WindowDataset([Recording("r", ramp(6, channels=3, size=5))], context_frames=4, target_frames=2)
    item = data[0]
    assert item["context"].shape == (4, 3, 5, 5)
    assert item["target"].shape == (2, 3, 5, 5)
    assert item["context"].dtype == torch.float32
    assert set(item) == {"context", "target"}


def test_negative_index_and_out_of_range() -> None:
    data = WindowDataset([Recording("r", ramp(6))], context_frames=2, target_frames=1)
    assert torch.equal(data[-1]["context"], data[len(data) - 1]["context"])
    with pytest.raises(IndexError):
        data[len(data)]


def test_too_few_frames_names_recording_and_counts() -> None:
    recordings = [Recording("long", ramp(8)), Recording("short_one", ramp(3), source="/data/short.npy")]
    with pytest.raises(ValueError, match=r"short_one.*short\.npy.*has 3 frames.*4 \+ 2 = 6"):
        WindowDataset(recordings, context_frames=4, target_frames=2)


def test_skip_invalid_logs_count_and_reason(caplog: pytest.LogCaptureFixture) -> None:
    recordings = [Recording("long", ramp(8)), Recording("short_one", ramp(3)), Recording("flat", np.zeros((8, 4, 4)))]
    with caplog.at_level(logging.WARNING):
        data = WindowDataset(recordings, context_frames=3, target_frames=2, skip_invalid=True)
    assert [rec.name for rec in data.recordings] == ["long"]
    assert "skipped 2 of 3" in caplog.text
    assert "short_one" in caplog.text
    assert "flat" in caplog.text


def test_wrong_dimensions_name_recording() -> None:
    with pytest.raises(ValueError, match=r"flat.*4 dimensions"):
        WindowDataset([Recording("flat", np.zeros((8, 4, 4)))], context_frames=2, target_frames=1)


def test_channel_mismatch_is_an_error() -> None:
    recordings = [Recording("a", ramp(5, channels=1)), Recording("b", ramp(5, channels=2))]
    with pytest.raises(ValueError, match="channel"):
        WindowDataset(recordings, context_frames=2, target_frames=1)


def test_bad_window_arguments() -> None:
    with pytest.raises(ValueError, match="stride"):
        WindowDataset([Recording("r", ramp(5))], context_frames=2, target_frames=1, stride=0)


def test_nan_raises_naming_the_file_and_frames() -> None:
    frames = ramp(6)
    frames[4, 0, 1, 1] = np.nan
    data = WindowDataset([Recording("r", frames, source="/x/field.nc")], context_frames=2, target_frames=1)
    data[0]  # frames 0-2 are clean
    with pytest.raises(ValueError, match=r"field\.nc.*1 NaN.*\[2, 5\)"):
        data[2]


def test_nan_mask_policy() -> None:
    frames = ramp(6)
    frames[4, 0, 1, 1] = np.nan
    data = WindowDataset([Recording("r", frames)], context_frames=2, target_frames=1, nan_policy="mask")
    item = data[2]  # frames 2, 3 | 4
    assert item["mask"].shape == item["target"].shape
    assert item["context_mask"].shape == item["context"].shape
    assert item["mask"][0, 0, 1, 1] == 0 and item["mask"].sum() == item["mask"].numel() - 1
    assert item["target"][0, 0, 1, 1] == 0
    assert torch.isfinite(item["target"]).all()
    assert item["context_mask"].min() == 1
    # every item carries the mask keys, so a batch can be collated
    assert set(data[0]) == {"context", "target", "context_mask", "mask"}


def test_recording_masks_are_aligned_with_frames() -> None:
    frames = ramp(6)
    mask = (ramp(6) % 2 == 0).astype(np.uint8)  # 1 on even frames
    data = WindowDataset([Recording("r", frames, mask=mask)], context_frames=3, target_frames=2, stride=1)
    item = data[1]  # frames 1, 2, 3 | 4, 5
    assert item["context_mask"][:, 0, 0, 0].tolist() == [0, 1, 0]
    assert item["mask"][:, 0, 0, 0].tolist() == [1, 0]
    assert item["mask"].dtype == torch.float32


def test_mask_shape_is_checked() -> None:
    with pytest.raises(ValueError, match="mask must have shape"):
        WindowDataset([Recording("r", ramp(6), mask=np.ones((5, 1, 4, 4)))], context_frames=2, target_frames=1)


def test_value_scale_for_integer_frames() -> None:
    frames = np.full((4, 1, 2, 2), 255, dtype=np.uint8)
    data = WindowDataset([Recording("r", frames)], context_frames=2, target_frames=1, value_scale=1 / 255)
    assert torch.allclose(data[0]["context"], torch.ones(2, 1, 2, 2))


def test_segment_windows_stay_inside_the_segment() -> None:
    whole = Recording("r", ramp(20))
    data = WindowDataset([whole.segment(5, 11)], context_frames=2, target_frames=1, stride=1)
    seen = {int(v) for i in range(len(data)) for v in torch.cat([data[i]["context"], data[i]["target"]]).unique()}
    assert seen == set(range(5, 11))
    with pytest.raises(ValueError, match="outside"):
        whole.segment(15, 25)


def test_transform_is_applied_to_items() -> None:
    def double(item: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {key: 2 * value for key, value in item.items()}

    data = WindowDataset([Recording("r", ramp(4))], context_frames=2, target_frames=1, transform=double)
    assert data[1]["context"][:, 0, 0, 0].tolist() == [2.0, 4.0]


def test_iter_frames_reads_each_frame_once() -> None:
    recordings = [Recording("a", ramp(7)), Recording("b", ramp(5, offset=100))]
    data = WindowDataset(recordings, context_frames=2, target_frames=2)
    chunks = [values for values, _ in data.iter_frames(chunk_frames=3)]
    seen = np.concatenate([c[:, 0, 0, 0] for c in chunks]).tolist()
    assert seen == list(range(7)) + [100 + t for t in range(5)]
