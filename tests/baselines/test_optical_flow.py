import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from convlstm.baselines import OpticalFlow, Persistence
from convlstm.baselines.optical_flow import import_pysteps
from convlstm.models import create_model, from_pretrained, list_models

SIZE = 40


def _blob_sequence(steps: int, velocity: tuple[float, float], start: tuple[float, float]) -> torch.Tensor:
    """(steps, SIZE, SIZE) frames of an elongated Gaussian blob (plus a smaller one beside it, so that it has
    corners to track) moving at ``velocity`` = (vy, vx) pixels per frame, with a little positive noise (a rigid
    noise-free motion gives identical vectors, whose covariance pysteps' outlier check cannot invert)."""
    y, x = np.mgrid[:SIZE, :SIZE].astype(np.float64)
    rng = np.random.default_rng(0)
    frames = []
    for t in range(steps):
        cy, cx = start[0] + velocity[0] * t, start[1] + velocity[1] * t
        blob = np.exp(-(((y - cy) / 4) ** 2 + ((x - cx) / 6) ** 2))
        blob += 0.6 * np.exp(-(((y - cy - 5) / 2.5) ** 2 + ((x - cx + 5) / 2.5) ** 2))
        frames.append(blob + 0.02 * rng.random(blob.shape))
    return torch.from_numpy(np.stack(frames)).float()


def _mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b) ** 2).mean())


def test_translating_blobs_are_extrapolated_far_better_than_persistence() -> None:
    # Channel 0 moves down-right, channel 1 up-left: each channel gets its own motion field.
    down_right = _blob_sequence(12, (1.5, 1.0), (10, 10))
    up_left = _blob_sequence(12, (-1.0, -1.5), (28, 28))
    sequence = torch.stack([down_right, up_left], dim=1)[None]  # (1, 12, 2, SIZE, SIZE)
    context, future = sequence[:, :5], sequence[:, 5:]
    model = create_model("optical_flow", motion_frames=3)
    out = model(context, horizon=7)
    assert out.shape == future.shape
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    baseline = Persistence()(context, horizon=7)
    for c in range(2):
        flow_error, persistence_error = _mse(out[:, :, c], future[:, :, c]), _mse(baseline[:, :, c], future[:, :, c])
        assert flow_error < 0.05 * persistence_error, (c, flow_error, persistence_error)


# Few, nearly identical vectors from 3 frame pairs can leave pysteps' outlier covariance singular; it warns and
# keeps them all, which is right for this rigid motion.
@pytest.mark.filterwarnings("ignore:Singular matrix during outlier detection:UserWarning")
def test_motion_field_recovers_the_velocity_of_each_channel() -> None:
    sequence = torch.stack([_blob_sequence(4, (1.5, 1.0), (12, 12)), _blob_sequence(4, (-1.0, 0.5), (26, 20))], 1)
    fields = OpticalFlow().motion(sequence[None])  # (1, 2, 2, SIZE, SIZE): x then y
    assert fields.shape == (1, 2, 2, SIZE, SIZE)
    centre = fields[0, :, :, 18:22, 16:20].mean(dim=(-2, -1))
    torch.testing.assert_close(centre[0], torch.tensor([1.0, 1.5]), atol=0.15, rtol=0)
    torch.testing.assert_close(centre[1], torch.tensor([0.5, -1.0]), atol=0.15, rtol=0)


def test_pixels_advected_from_outside_the_frame_become_zero() -> None:
    sequence = _blob_sequence(6, (0.0, 2.0), (20, 12))[None, :, None]  # moving right by 2 px per frame
    out = OpticalFlow(motion_frames=4)(sequence, horizon=5)
    # At lead k the leftmost ~2k columns come from beyond the left edge; pysteps gives NaN there.
    assert torch.isfinite(out).all()
    assert (out[0, 4, 0, :, :6] == 0).all()
    assert (sequence[0, -1, 0, :, :6] > 0).all()  # the input background there is tiny but not zero


def test_batches_are_forecast_one_sequence_at_a_time() -> None:
    first = _blob_sequence(5, (1.0, 1.0), (10, 10))[None, :, None]
    second = _blob_sequence(5, (0.0, -1.5), (20, 30))[None, :, None]
    model = OpticalFlow(1)
    together = model(torch.cat([first, second]), horizon=3)
    torch.testing.assert_close(together[:1], model(first, horizon=3))
    torch.testing.assert_close(together[1:], model(second, horizon=3))


def test_bad_inputs_are_rejected() -> None:
    model = OpticalFlow(motion_frames=3)
    with pytest.raises(ValueError, match="at least motion_frames=3 frames"):
        model(torch.rand(1, 2, 1, 16, 16))
    context = torch.rand(1, 4, 1, 16, 16)
    context[0, -1, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="context must be finite"):
        model(context)
    with pytest.raises(ValueError, match=r"teacher_forcing must have shape \(2,\) or \(1, 2\)"):
        model(torch.rand(1, 4, 1, 16, 16), 2, torch.rand(1, 2, 1, 16, 16), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="motion_frames must be an int >= 2"):
        OpticalFlow(motion_frames=1)


@pytest.mark.parametrize("missing", ["pysteps", "cv2"])
def test_missing_optional_dependency_names_the_extra(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    # A None entry in sys.modules makes `import` fail as if the package were not installed (our error path).
    monkeypatch.setitem(sys.modules, missing, None)
    with pytest.raises(ImportError, match=r"pip install convlstm\[nowcast\]"):
        OpticalFlow()(torch.rand(1, 3, 1, 16, 16))


def test_importing_pysteps_prints_nothing(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Forget pysteps for the duration of the test so that its import, banner included, runs again.
    for name in [n for n in sys.modules if n == "pysteps" or n.startswith("pysteps.")]:
        monkeypatch.delitem(sys.modules, name)
    import_pysteps()
    assert "pysteps" in sys.modules
    assert capsys.readouterr().out == ""


def test_registered_and_config_round_trips(tmp_path: Path) -> None:
    assert "optical_flow" in list_models()
    model = OpticalFlow(2, motion_frames=4, default_horizon=6)
    model.save_pretrained(tmp_path)
    loaded = from_pretrained(tmp_path)
    assert isinstance(loaded, OpticalFlow)
    assert loaded.config == model.config
    assert list(loaded.parameters()) == []
