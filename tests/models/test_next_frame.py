from pathlib import Path

import pytest
import torch

from convlstm.models import create_model, from_pretrained
from convlstm.models.next_frame import NextFramePredictor
from tests.tolerances import FLOAT32_REORDERED


def _frames(batch: int = 2, steps: int = 4, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, steps, 1, size, size, generator=torch.Generator().manual_seed(seed))


def _tiny(**overrides: object) -> NextFramePredictor:
    torch.manual_seed(0)
    model = create_model("next_frame_tiny", **overrides)
    assert isinstance(model, NextFramePredictor)
    return model


def test_one_step_and_forecast_shapes() -> None:
    model = _tiny()
    frames = _frames()
    one_step, state = model.one_step(frames)
    assert one_step.shape == frames.shape
    assert state[0][0].shape == (2, 8, 4, 4)  # the ConvLSTM runs on frames / 4
    assert ((one_step >= 0) & (one_step <= 1)).all()
    forecast = model(frames, horizon=5)
    assert forecast.shape == (2, 5, 1, 16, 16)
    assert torch.isfinite(forecast).all()
    assert model(frames).shape == (2, model.config.default_horizon, 1, 16, 16)


def test_moving_mnist_default_runs_on_64x64() -> None:
    torch.manual_seed(0)
    model = create_model("next_frame_convlstm")
    assert model(torch.rand(1, 2, 1, 64, 64), horizon=2).shape == (1, 2, 1, 64, 64)


def test_three_stages_and_linear_output() -> None:
    linear = _tiny(output_activation="linear", encoder_channels=(4, 6, 8), hidden_channels=(5, 7))
    bounded = _tiny(output_activation="sigmoid", encoder_channels=(4, 6, 8), hidden_channels=(5, 7))
    frames = _frames()
    raw, state = linear.one_step(frames)
    squashed, _ = bounded.one_step(frames)
    assert raw.shape == (2, 4, 1, 16, 16)
    assert [h.shape[1:] for h, _ in state] == [(5, 2, 2), (7, 2, 2)]
    torch.testing.assert_close(torch.sigmoid(raw), squashed)


def test_every_parameter_gets_a_gradient() -> None:
    model = _tiny()
    frames = _frames()
    predictions = model(frames[:, :2], horizon=2)
    one_step, _ = model.one_step(frames)
    ((predictions - frames[:, 2:]) ** 2).mean().add(((one_step[:, :-1] - frames[:, 1:]) ** 2).mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_one_step_frame_by_frame_equals_one_call() -> None:
    model = _tiny()
    frames = _frames(steps=5)
    whole, (whole_state,) = model.one_step(frames)
    state = None
    for t in range(5):
        step, state = model.one_step(frames[:, t : t + 1], state)
        # float32: the same sums in another order (tests/tolerances.py)
        torch.testing.assert_close(step[:, 0], whole[:, t], **FLOAT32_REORDERED)
    assert state is not None
    # float32: the same sums in another order (tests/tolerances.py)
    torch.testing.assert_close(state[0][1], whole_state[1], **FLOAT32_REORDERED)


def test_prediction_at_t_does_not_see_later_frames() -> None:
    model = _tiny()
    frames = _frames(steps=5)
    changed = frames.clone()
    changed[:, 3] = 0.0
    a, _ = model.one_step(frames)
    b, _ = model.one_step(changed)
    torch.testing.assert_close(a[:, :3], b[:, :3], atol=0, rtol=0)
    assert not torch.allclose(a[:, 3], b[:, 3])


def test_rollout_feeds_predictions_back() -> None:
    model = _tiny()
    context = _frames(steps=3)
    predictions = model(context, horizon=3)
    out, state = model.one_step(context)
    expected = [out[:, -1]]
    for _ in range(2):
        out, state = model.one_step(expected[-1].unsqueeze(1), state)
        expected.append(out[:, 0])
    # float32: the same sums in another order (tests/tolerances.py)
    torch.testing.assert_close(predictions, torch.stack(expected, 1), **FLOAT32_REORDERED)


def test_teacher_forcing_mask_is_honored() -> None:
    model = _tiny()
    sequence = _frames(steps=7)
    context, targets = sequence[:, :3], sequence[:, 3:]
    forced = model(context, horizon=4, targets=targets, teacher_forcing=torch.ones(4, dtype=torch.bool))
    one_step, _ = model.one_step(sequence[:, :6])
    # float32: the same sums in another order (tests/tolerances.py)
    torch.testing.assert_close(forced, one_step[:, 2:6], **FLOAT32_REORDERED)
    # Forcing only step 1's input: prediction 2 is made from the true frame 4 and the free-running state.
    mask = torch.tensor([False, True, False, False])
    partly = model(context, horizon=4, targets=targets, teacher_forcing=mask)
    free = model(context, horizon=4)
    torch.testing.assert_close(partly[:, :2], free[:, :2], atol=0, rtol=0)
    assert not torch.allclose(partly[:, 2], free[:, 2])
    with pytest.raises(ValueError, match="teacher_forcing needs targets"):
        model(context, horizon=4, teacher_forcing=mask)


def test_seeded_construction_is_deterministic() -> None:
    frames = _frames()
    torch.testing.assert_close(_tiny()(frames, horizon=2), _tiny()(frames, horizon=2), atol=0, rtol=0)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    model = _tiny(encoder_channels=[4, 6])  # a list, as a YAML recipe gives it
    loaded = from_pretrained(model.save_pretrained(tmp_path / "next_frame"))
    assert isinstance(loaded, NextFramePredictor)
    assert loaded.config == model.config
    frames = _frames()
    torch.testing.assert_close(loaded(frames, horizon=3), model(frames, horizon=3), atol=0, rtol=0)


def test_bad_sizes_and_arguments_raise() -> None:
    model = _tiny()
    with pytest.raises(ValueError, match=r"divisible by patch_size \* 2\*\*len\(encoder_channels\) = 4 .*got 18x16"):
        model.one_step(torch.rand(1, 2, 1, 18, 16))
    with pytest.raises(ValueError, match="context must have 1 channels"):
        model(torch.rand(1, 2, 3, 16, 16))
    with pytest.raises(ValueError, match="horizon must be an int >= 1"):
        model(torch.rand(1, 2, 1, 16, 16), horizon=0)
    with pytest.raises(ValueError, match="encoder_channels must be a sequence of ints >= 1, got"):
        NextFramePredictor(encoder_channels=(8, 0))
    with pytest.raises(ValueError, match="hidden_channels must be a non-empty sequence of ints >= 1, got"):
        NextFramePredictor(hidden_channels=())
    with pytest.raises(ValueError, match="patch_size must be an int >= 1"):
        NextFramePredictor(patch_size=0)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        NextFramePredictor(kernel_size=4)


def test_patches_with_no_encoder_stages_make_openstl_convlstm_s() -> None:
    torch.manual_seed(0)
    model = create_model("openstl_convlstm_s")
    # OpenSTL (Tan et al. 2023):'s ConvLSTM-S uses 11.68M of its 15.0M parameters.
    assert sum(p.numel() for p in model.parameters()) == 11_677_712
    frames = _frames(batch=1, steps=3, size=16)
    one_step, state = model.one_step(frames)
    assert one_step.shape == frames.shape
    assert [h.shape for h, _ in state] == [(1, 128, 4, 4)] * 4  # 4x4 patches of a 16x16 frame
    assert model.config.output_activation == "linear"  # as OpenSTL: no squashing of the 1x1 convolution


def test_patching_is_the_same_network_on_space_to_depth_frames() -> None:
    from convlstm.models.patching import depth_to_space, space_to_depth

    patched = _tiny(patch_size=2)
    plain = _tiny(in_channels=4)  # the same layers, reading 2x2 patches as 4 channels
    plain.load_state_dict(patched.state_dict())
    frames = _frames(size=16)
    out, _ = patched.one_step(frames)
    reference, _ = plain.one_step(space_to_depth(frames, 2))
    torch.testing.assert_close(out, depth_to_space(reference, 2))


def test_frames_not_divisible_by_patches_and_stages_are_refused() -> None:
    model = _tiny(patch_size=2)  # 2x2 patches and two stride-2 stages: frames must divide by 8
    with pytest.raises(ValueError, match=r"divisible by patch_size \* 2\*\*len\(encoder_channels\) = 8.*got 12x12"):
        model(_frames(size=12), horizon=1)
