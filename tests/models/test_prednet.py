from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from convlstm.models import create_model, from_pretrained
from convlstm.models.prednet import PredNet, PredNetOutput, named_layer_loss_weights, time_loss_weights
from tests.tolerances import FLOAT32_REORDERED


def _frames(batch: int = 2, steps: int = 4, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, steps, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _tiny(**overrides: object) -> PredNet:
    torch.manual_seed(0)
    model = create_model("prednet_tiny", **overrides)
    assert isinstance(model, PredNet)
    return model


def _randomize_biases(model: PredNet) -> None:
    """Keras starts every bias at zero, which makes the first state exactly zero; random biases test more."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.3 * torch.randn(p.shape, generator=generator))


def _hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return (0.2 * x + 0.5).clamp(0.0, 1.0)


def reference_prednet(model: PredNet, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The Keras layer's step written out: one convolution per gate over [R_l(t-1), E_l(t-1), up(R_{l+1}(t))]."""
    cfg = model.config
    layers = model.num_layers
    batch, steps, _, height, width = frames.shape

    def zeros(channels: int, level: int) -> torch.Tensor:
        return frames.new_zeros(batch, channels, height >> level, width >> level)

    r = [zeros(cfg.r_stack_sizes[level], level) for level in range(layers)]
    c = [zeros(cfg.r_stack_sizes[level], level) for level in range(layers)]
    e = [zeros(2 * cfg.stack_sizes[level], level) for level in range(layers)]
    predictions, errors = [], []
    for t in range(steps):
        new_r: list[torch.Tensor] = [frames] * layers
        new_c: list[torch.Tensor] = [frames] * layers
        for level in reversed(range(layers)):
            cell = model.representation[level]
            inputs = [r[level], e[level]]
            if level < layers - 1:
                inputs.append(F.interpolate(new_r[level + 1], scale_factor=2.0, mode="nearest"))
            weight = torch.cat([cell.recurrent_conv.weight, cell.input_conv.weight], dim=1)
            gates = F.conv2d(torch.cat(inputs, dim=1), weight, cell.bias, padding=1)
            i, f, g, o = gates.chunk(4, dim=1)
            new_c[level] = _hard_sigmoid(f) * c[level] + _hard_sigmoid(i) * torch.tanh(g)
            new_r[level] = _hard_sigmoid(o) * torch.tanh(new_c[level])
        r, c, e = new_r, new_c, []
        a = frames[:, t]
        for level in range(layers):
            conv = model.prediction[level]
            ahat = F.relu(F.conv2d(r[level], conv.weight, conv.bias, padding=1))
            if level == 0:
                ahat = torch.minimum(ahat, torch.tensor(cfg.pixel_max))
                predictions.append(ahat)
            e.append(torch.cat([F.relu(ahat - a), F.relu(a - ahat)], dim=1))
            if level < layers - 1:
                conv = model.target[level]
                a = F.max_pool2d(F.relu(F.conv2d(e[level], conv.weight, conv.bias, padding=1)), 2)
        errors.append(torch.stack([x.mean(dim=(1, 2, 3)) for x in e], dim=1))
    return torch.stack(predictions, dim=1), torch.stack(errors, dim=1)


def test_matches_the_keras_step_written_out() -> None:
    model = _tiny()
    _randomize_biases(model)
    frames = _frames()
    out, _ = model.run(frames, output_mode="all")
    assert isinstance(out, PredNetOutput)
    predictions, errors = reference_prednet(model, frames)
    torch.testing.assert_close(out.predictions, predictions, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.errors, errors, atol=1e-5, rtol=1e-5)


def test_output_modes_shapes_and_meaning() -> None:
    model = _tiny()
    _randomize_biases(model)
    frames = _frames()
    predictions, _ = model.run(frames, output_mode="prediction")
    errors, _ = model.run(frames, output_mode="error")
    everything, _ = model.run(frames, output_mode="all")
    assert predictions.shape == (2, 4, 3, 16, 16)
    assert errors.shape == (2, 4, 3)
    assert [r.shape for r in everything.representations] == [(2, 4, 3, 16, 16), (2, 4, 4, 8, 8), (2, 4, 8, 4, 4)]
    assert [e.shape for e in everything.error_units] == [(2, 4, 6, 16, 16), (2, 4, 8, 8, 8), (2, 4, 16, 4, 4)]
    assert torch.isfinite(errors).all() and (errors >= 0).all()
    # E_0 holds |Ahat_0 - frame| split in two halves, so its mean is half the mean absolute error.
    torch.testing.assert_close(errors[..., 0], 0.5 * (predictions - frames).abs().mean(dim=(2, 3, 4)))
    torch.testing.assert_close(everything.predictions, predictions, atol=0, rtol=0)
    torch.testing.assert_close(everything.errors, errors, atol=0, rtol=0)
    assert model.run(frames)[0].shape == (2, 4, 3)  # the configured output_mode is "error"


def test_kitti_defaults_and_parameter_count() -> None:
    torch.manual_seed(0)
    model = create_model("prednet_kitti")
    assert isinstance(model, PredNet)
    a, r = (3, 48, 96, 192), (3, 48, 96, 192)
    expected = 0
    for level in range(4):
        inputs = 2 * a[level] + (r[level + 1] if level < 3 else 0) + r[level]
        expected += 4 * r[level] * (inputs * 9 + 1)  # i, f, c, o: a 3x3 conv over [R, E, R_up] each
        expected += a[level] * (r[level] * 9 + 1)  # Ahat_l
        if level < 3:
            expected += a[level + 1] * (2 * a[level] * 9 + 1)  # A_{l+1}
    assert sum(p.numel() for p in model.parameters()) == expected
    assert model.layer_weights == (1.0, 0.0, 0.0, 0.0)
    # 16x16 is divisible by 2**3; the full 128x160 frames are too slow for a unit test on the CPU.
    errors, state = model.run(torch.rand(1, 2, 3, 16, 16))
    assert errors.shape == (1, 2, 4)
    assert [x.shape[1:] for x in state.r] == [(3, 16, 16), (48, 8, 8), (96, 4, 4), (192, 2, 2)]


def test_prediction_is_clipped_at_pixel_max() -> None:
    model = _tiny(pixel_max=0.5)
    with torch.no_grad():
        model.prediction[0].bias.fill_(5.0)
    predictions, _ = model.run(_frames(), output_mode="prediction")
    assert predictions.max() <= 0.5
    # The zero first state (zero biases in the cells) leaves only the bias: relu(5) clipped to 0.5 everywhere.
    assert (predictions[:, 0] == 0.5).all()


def test_frame_by_frame_equals_one_call() -> None:
    model = _tiny(extrap_start_time=3)
    _randomize_biases(model)
    frames = _frames(steps=5)
    whole, whole_state = model.run(frames, output_mode="prediction")
    state = None
    for t in range(5):
        step, state = model.run(frames[:, t : t + 1], state, output_mode="prediction")
        # float32: the same sums in another order (tests/tolerances.py)
        torch.testing.assert_close(step[:, 0], whole[:, t], **FLOAT32_REORDERED)
    assert state is not None and state.step == whole_state.step == 5
    # float32: the same sums in another order (tests/tolerances.py)
    torch.testing.assert_close(state.c[2], whole_state.c[2], **FLOAT32_REORDERED)


def test_extrapolation_ignores_frames_and_matches_the_forecaster_call() -> None:
    model = _tiny(extrap_start_time=3)
    _randomize_biases(model)
    frames = _frames(steps=6)
    changed = frames.clone()
    changed[:, 3:] = 0.0
    run, _ = model.run(frames, output_mode="prediction")
    run_changed, _ = model.run(changed, output_mode="prediction")
    torch.testing.assert_close(run, run_changed, atol=0, rtol=0)
    without, _ = model.run(frames, output_mode="prediction", extrap_start_time=10)
    torch.testing.assert_close(run[:, :4], without[:, :4], atol=0, rtol=0)  # step 3's own prediction is made first
    assert not torch.allclose(run[:, 4], without[:, 4])
    forecast = model(frames[:, :3], horizon=3)
    assert forecast.shape == (2, 3, 3, 16, 16)
    # float32: the same sums in another order (tests/tolerances.py)
    torch.testing.assert_close(forecast, run[:, 3:], **FLOAT32_REORDERED)


def test_teacher_forcing_replaces_the_stand_in_for_the_unseen_frame() -> None:
    model = _tiny()
    _randomize_biases(model)
    sequence = _frames(steps=6)
    context, targets = sequence[:, :3], sequence[:, 3:]
    # Forcing every step: PredNet run over the true sequence (one-step predictions), as for the other forecasters.
    forced = model(context, horizon=3, targets=targets, teacher_forcing=torch.ones(3, dtype=torch.bool))
    one_step, _ = model.run(sequence, output_mode="prediction")
    # float32: the same sums in another order (tests/tolerances.py)
    torch.testing.assert_close(forced, one_step[:, 3:], **FLOAT32_REORDERED)
    # Forcing frame 1 only: forecasts 0 and 1 are made before it is consumed, forecast 2 sees it.
    partly = model(context, horizon=3, targets=targets, teacher_forcing=torch.tensor([False, True, False]))
    free = model(context, horizon=3)
    torch.testing.assert_close(partly[:, :2], free[:, :2], atol=0, rtol=0)
    assert not torch.allclose(partly[:, 2], free[:, 2])


@pytest.mark.parametrize("weights", ["L_0", "L_all"])
def test_every_parameter_gets_a_gradient(weights: str) -> None:
    """Also with L_0: the upper layers reach the pixel prediction through the top-down R path from t=1 on."""
    model = _tiny(layer_loss_weights=weights)
    errors, _ = model.run(_frames(steps=4), output_mode="error")
    model.weighted_error(errors).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_prediction_loss_reaches_every_parameter() -> None:
    """The fine-tuning loss (MAE of the predictions after t=0, extrapolating) trains every parameter too."""
    model = _tiny(extrap_start_time=2)
    frames = _frames(steps=4)
    predictions, _ = model.run(frames, output_mode="prediction")
    (0.5 * (predictions[:, 1:] - frames[:, 1:]).abs().mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_a_single_step_gives_state_to_state_weights_no_gradient() -> None:
    """With nt=1 every R_l(t-1) and E_l(t-1) is the zero initial state, so the state-to-state convolutions and the
    top layer's input convolution (it sees only E(t-1)) cannot learn; everything else can."""
    model = _tiny(layer_loss_weights="L_all")
    _randomize_biases(model)
    errors, _ = model.run(_frames(steps=1), output_mode="error")
    model.weighted_error(errors, time_weights=[1.0]).mean().backward()
    silent = {n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()}
    top = model.num_layers - 1
    expected = {f"representation.{level}.recurrent_conv.weight" for level in range(model.num_layers)}
    expected.add(f"representation.{top}.input_conv.weight")
    assert silent == expected


def test_loss_weights_and_weighted_error() -> None:
    torch.testing.assert_close(time_loss_weights(5), torch.tensor([0.0, 0.25, 0.25, 0.25, 0.25]))
    assert named_layer_loss_weights("L_all", 4) == (1.0, 0.1, 0.1, 0.1)
    assert named_layer_loss_weights("L_0", 3) == (1.0, 0.0, 0.0)
    model = _tiny(layer_loss_weights=(1.0, 0.5, 0.25))
    errors = torch.rand(2, 4, 3, generator=torch.Generator().manual_seed(0))
    expected = torch.zeros(2)
    for t in range(1, 4):
        expected += (errors[:, t, 0] + 0.5 * errors[:, t, 1] + 0.25 * errors[:, t, 2]) / 3
    torch.testing.assert_close(model.weighted_error(errors), expected)
    with pytest.raises(ValueError, match="num_steps must be an int >= 2, got 1"):
        time_loss_weights(1)
    with pytest.raises(ValueError, match="errors must have shape"):
        model.weighted_error(torch.rand(2, 4, 4))


def test_seeded_construction_is_deterministic() -> None:
    frames = _frames()
    torch.testing.assert_close(_tiny().run(frames)[0], _tiny().run(frames)[0], atol=0, rtol=0)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    model = _tiny(layer_loss_weights="L_all", extrap_start_time=2, output_mode="prediction")
    _randomize_biases(model)
    loaded = from_pretrained(model.save_pretrained(tmp_path / "prednet"))
    assert isinstance(loaded, PredNet)
    assert loaded.config == model.config
    frames = _frames()
    torch.testing.assert_close(loaded.run(frames)[0], model.run(frames)[0], atol=0, rtol=0)
    torch.testing.assert_close(loaded(frames, horizon=2), model(frames, horizon=2), atol=0, rtol=0)


def test_bad_sizes_and_arguments_raise() -> None:
    model = _tiny()
    with pytest.raises(ValueError, match=r"divisible by 2\*\*\(layers - 1\) = 4 \(3 layers\), got 18x16"):
        model.run(torch.rand(1, 2, 3, 18, 16))
    with pytest.raises(ValueError, match=r"= 8 \(4 layers\), got 12x16"):
        create_model("prednet_kitti")(torch.rand(1, 2, 3, 12, 16))
    with pytest.raises(ValueError, match="C=3"):
        model.run(torch.rand(1, 2, 1, 16, 16))
    with pytest.raises(ValueError, match="r_stack_sizes must have 3 entries"):
        PredNet(stack_sizes=(3, 4, 8), r_stack_sizes=(3, 4))
    with pytest.raises(ValueError, match="layer_loss_weights must have 3 entries"):
        PredNet(stack_sizes=(3, 4, 8), layer_loss_weights=(1.0, 0.1))
    with pytest.raises(ValueError, match="layer_loss_weights must be one of"):
        PredNet(layer_loss_weights="L_1")
    with pytest.raises(ValueError, match="output_mode must be one of"):
        model.run(_frames(), output_mode="R0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="extrap_start_time must be None or an int >= 1"):
        PredNet(extrap_start_time=0)
    _, state = model.run(_frames())
    with pytest.raises(ValueError, match=r"state.r\[0\] must have shape \(2, 3, 32, 32\)"):
        model.run(_frames(size=32), state)
