import json
import logging

import numpy as np
import pytest
import torch

from convlstm.data.core.normalization import Normalization
from convlstm.data.core.windows import Recording, WindowDataset


def random_recordings(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    # channel 0 around 5 (std 2), channel 1 around -1 (std 0.5)
    return [
        np.stack([rng.normal(5, 2, (n, 6, 6)), rng.normal(-1, 0.5, (n, 6, 6))], axis=1).astype(np.float32)
        for n in (9, 14)
    ]


def test_standard_stats_count_each_frame_once() -> None:
    arrays = random_recordings()
    data = WindowDataset([Recording(f"r{i}", a) for i, a in enumerate(arrays)], context_frames=3, target_frames=2)
    norm = Normalization.fit(data, kind="standard")
    every_frame = np.concatenate(arrays).astype(np.float64)  # overlapping windows would weight frames unequally
    np.testing.assert_allclose(norm.center, every_frame.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(norm.scale, every_frame.std(axis=(0, 2, 3)), rtol=1e-6)


def test_minmax_maps_training_data_to_unit_range() -> None:
    arrays = random_recordings(1)
    data = WindowDataset([Recording("r", arrays[1])], context_frames=2, target_frames=2, transform=None)
    norm = Normalization.fit(data, kind="minmax")
    data.transform = norm
    values = torch.cat([torch.cat([data[i]["context"], data[i]["target"]]) for i in range(len(data))])
    for c in range(2):
        assert values[:, c].min().item() == pytest.approx(0.0, abs=1e-6)
        assert values[:, c].max().item() == pytest.approx(1.0, abs=1e-6)


def test_fit_from_arrays_ignores_nan() -> None:
    x = np.array([[[[1.0, np.nan], [3.0, 5.0]]]])  # (1, 1, 2, 2)
    norm = Normalization.fit([x])
    assert norm.center == pytest.approx([3.0])
    assert norm.scale == pytest.approx([np.std([1.0, 3.0, 5.0])])


def test_fit_on_masked_dataset_leaves_out_masked_values() -> None:
    frames = np.ones((6, 1, 3, 3), dtype=np.float32)
    frames[2, 0, 0, 0] = np.nan
    frames[3] = 3.0
    data = WindowDataset([Recording("r", frames)], context_frames=2, target_frames=1, nan_policy="mask")
    norm = Normalization.fit(data)
    valid = frames[np.isfinite(frames)]
    assert norm.center == pytest.approx([valid.mean()])
    with pytest.raises(ValueError, match="NaN"):
        Normalization.fit(WindowDataset([Recording("r", frames)], context_frames=2, target_frames=1))


def test_apply_invert_round_trip_tensor_and_numpy() -> None:
    norm = Normalization("standard", [1.0, -2.0], [2.0, 0.5])
    x = torch.randn(2, 3, 2, 4, 4)
    y = norm.apply(x)
    assert torch.allclose(y[:, :, 1], (x[:, :, 1] + 2.0) / 0.5)
    assert torch.allclose(norm.invert(y), x, atol=1e-6)
    a = np.random.default_rng(0).random((3, 2, 4, 4)).astype(np.float32)
    assert norm.apply(a).dtype == np.float32
    np.testing.assert_allclose(norm.invert(norm.apply(a)), a, rtol=1e-5)


def test_item_transform_leaves_masks_alone() -> None:
    norm = Normalization("minmax", [10.0], [10.0])
    item = {"context": torch.full((2, 1, 2, 2), 20.0), "target": torch.full((1, 1, 2, 2), 15.0)}
    item["mask"] = torch.ones(1, 1, 2, 2)
    out = norm(item)
    assert out["context"].unique().tolist() == [1.0]
    assert out["target"].unique().tolist() == [0.5]
    assert torch.equal(out["mask"], item["mask"])


def test_json_round_trip() -> None:
    norm = Normalization.fit(random_recordings()[:1], kind="standard")
    restored = Normalization.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert restored == norm


def test_constant_channel_gets_unit_scale(caplog: pytest.LogCaptureFixture) -> None:
    x = np.stack([np.full((4, 3, 3), 7.0), np.arange(36.0).reshape(4, 3, 3)], axis=1)
    with caplog.at_level(logging.WARNING):
        norm = Normalization.fit([x])
    assert norm.scale[0] == 1.0 and norm.center[0] == 7.0
    assert "constant" in caplog.text


def test_errors() -> None:
    with pytest.raises(ValueError, match="kind"):
        Normalization("zscore", [0.0], [1.0])
    with pytest.raises(ValueError, match="scale > 0"):
        Normalization("standard", [0.0], [0.0])
    with pytest.raises(ValueError, match=r"\(\.\.\., 2, H, W\)"):
        Normalization("standard", [0.0, 0.0], [1.0, 1.0]).apply(torch.zeros(3, 1, 4, 4))
    with pytest.raises(ValueError, match="no valid values"):
        Normalization.fit([])
