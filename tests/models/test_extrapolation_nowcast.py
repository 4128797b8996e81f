"""The learned nowcast that starts from pysteps' extrapolation: exactly pysteps untrained, learning from there, its
ensemble, probability matching, and the exact backtracking it moves the extrapolation with."""

import contextlib
import io

import numpy as np
import pytest
import torch

from convlstm.baselines import OpticalFlow
from convlstm.models import ExtrapolationNowcast, create_model, from_pretrained
from convlstm.models.extrapolation_nowcast import (
    backtrack_exact,
    detail_bands,
    gaussian_blur,
    non_negative,
    probability_match,
    smooth,
    unit_interval,
)

SIZE = 32
SMALL = {"base_channels": 4, "depth": 1}  # a quick network for the training tests


def _moving_rain(steps: int, *, growth: float = 1.0, size: int = SIZE) -> torch.Tensor:
    """(1, steps, 1, size, size) rain rates (mm/h): a Gaussian cell of 8 mm/h and a smaller one beside it (corners to
    track) moving 1 pixel per frame to the right and half a pixel down, multiplied by ``growth`` every frame, with
    a little positive noise (rigid noise-free motion gives identical vectors, which pysteps' outlier check cannot
    invert)."""
    y, x = np.mgrid[:size, :size].astype(np.float64)
    rng = np.random.default_rng(0)
    frames = []
    for t in range(steps):
        cy, cx = 12 + 0.5 * t, 9 + 1.0 * t
        cell = 8 * np.exp(-(((y - cy) / 3.5) ** 2 + ((x - cx) / 5) ** 2))
        cell += 4 * np.exp(-(((y - cy - 5) / 2) ** 2 + ((x - cx + 4) / 2) ** 2))
        frames.append(growth**t * cell + 0.05 * rng.random(cell.shape))
    return torch.from_numpy(np.stack(frames)).float()[None, :, None]


def _pysteps_extrapolation(context: torch.Tensor, horizon: int, motion_frames: int = 3) -> torch.Tensor:
    """pysteps called directly on one sequence: Lucas-Kanade on the last frames, the last frame advected, NaN -> 0."""
    with contextlib.redirect_stdout(io.StringIO()):
        from pysteps import motion, nowcasts
    frames = context[0, -motion_frames:, 0].double().numpy()
    velocity = motion.get_method("lucaskanade")(frames)
    forecast = nowcasts.get_method("extrapolation")(frames[-1], velocity, horizon)
    forecast[np.isnan(forecast)] = 0.0
    return torch.from_numpy(forecast).float()[None, :, None]


def test_untrained_it_is_pysteps_extrapolation_exactly() -> None:
    context = _moving_rain(4)
    expected = _pysteps_extrapolation(context, 6)
    assert (expected == 0).any() and (expected > 1).any()  # rain moved on, zeros advected in from the left edge
    for name in ("extrapolation_nowcast", "extrapolation_nowcast_ensemble"):
        model = create_model(name)
        assert isinstance(model, ExtrapolationNowcast)
        for training in (True, False):  # eval mode adds probability matching, which keeps equal fields equal
            model.train(training)
            with torch.no_grad():
                assert torch.equal(model(context, horizon=6), expected), (name, training)
    assert torch.equal(OpticalFlow()(context, horizon=6), expected)


def test_frames_of_any_size_are_padded_inside_and_cropped_back() -> None:
    context = _moving_rain(4, size=30)[..., :27]  # neither side a multiple of 2**depth = 4
    model = create_model("extrapolation_nowcast").eval()
    with torch.no_grad():
        out = model(context, horizon=3)
    assert out.shape == (1, 3, 1, 30, 27)
    assert torch.equal(out, OpticalFlow()(context, horizon=3))


def test_a_lead_time_does_not_depend_on_the_horizon_asked_for() -> None:
    torch.manual_seed(0)
    model = create_model("extrapolation_nowcast", **SMALL)
    torch.nn.init.normal_(model.net.head.weight, std=0.1)  # some correction, as after training
    context = _moving_rain(4)
    with torch.no_grad():
        torch.testing.assert_close(model(context, horizon=5)[:, :2], model(context, horizon=2), rtol=0, atol=0)


def test_one_backward_reaches_the_zero_started_head_and_after_one_step_every_parameter() -> None:
    # A layer that starts at zero passes no gradient to the layers before it (its weights are what multiplies
    # theirs); it gets one itself, and once a step has moved it, so does everything else.
    torch.manual_seed(0)
    model = create_model("extrapolation_nowcast", **SMALL).train()
    context, future = _moving_rain(4 + 3).split([4, 3], dim=1)
    loss = (model(context, horizon=3) - 1.3 * future).square().mean()
    loss.backward()
    head = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert head == {"net.head.weight", "net.head.bias"}
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.zero_grad()
    (model(context, horizon=3) - 1.3 * future).square().mean().backward()
    assert [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []


def test_a_few_steps_on_growing_rain_change_the_forecast_and_lower_the_error() -> None:
    torch.manual_seed(0)
    sequence = _moving_rain(4 + 3, growth=1.25)  # the cells grow by a quarter every frame: extrapolation lags
    context, future = sequence[:, :4], sequence[:, 4:]
    model = create_model("extrapolation_nowcast", probability_matching=False, **SMALL).train()
    extrapolated = _pysteps_extrapolation(context, 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(12):
        optimizer.zero_grad()
        loss = (model(context, horizon=3) - future).square().mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        out = model(context, horizon=3)
    assert not torch.equal(out, extrapolated)
    assert (out >= 0).all()
    assert float((out - future).square().mean()) < 0.5 * losses[0], losses


def test_ensemble_members_start_at_the_extrapolation_and_differ_once_the_head_moves() -> None:
    context = _moving_rain(4)
    expected = _pysteps_extrapolation(context, 3)
    model = create_model("extrapolation_nowcast_ensemble", **SMALL)
    members = model.ensemble(context, 3, members=5, generator=torch.Generator().manual_seed(0))
    assert members.shape == (1, 5, 3, 1, SIZE, SIZE)
    assert all(torch.equal(members[:, m], expected) for m in range(5))
    assert model.ensemble(context, 3).shape[1] == model.config.members
    torch.manual_seed(1)
    torch.nn.init.normal_(model.member_out.weight, std=0.1)  # what training does: now the noise reaches the output
    with torch.no_grad():
        members = model.ensemble(context, 3, members=4, generator=torch.Generator().manual_seed(0))
        again = model.ensemble(context, 3, members=4, generator=torch.Generator().manual_seed(0))
        control = model(context, 3)
    assert torch.equal(members, again)  # the same generator state, the same members
    with torch.no_grad():  # ... whatever else is in the batch
        pair = model.ensemble(
            torch.cat([context, 0.5 * context]), 3, members=4, generator=torch.Generator().manual_seed(0)
        )
    torch.testing.assert_close(pair[:1], members, rtol=0, atol=1e-5)
    assert not torch.equal(members[:, 0], members[:, 1]) and (members >= 0).all()
    assert all(not torch.equal(members[:, m], control) for m in range(4))  # forward: the noise-free member


def test_the_ensemble_runs_the_unet_once_for_all_its_members_and_trains_every_parameter() -> None:
    torch.manual_seed(0)
    model = create_model("extrapolation_nowcast_ensemble", **SMALL).train()
    passes = []
    model.net.register_forward_hook(lambda *_: passes.append(1))
    context, future = _moving_rain(4 + 3).split([4, 3], dim=1)

    def crps_like_loss() -> torch.Tensor:
        members = model.ensemble(context, 3, members=6)
        spread = (members[:, :3] - members[:, 3:]).abs().mean()
        return (members - 1.3 * future.unsqueeze(1)).abs().mean() - 0.5 * spread

    crps_like_loss().backward()
    assert len(passes) == 1  # six members, one U-Net pass
    moved = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert moved == {"member_out.weight", "member_out.bias"}  # the zero-started layer first
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.zero_grad()
    crps_like_loss().backward()
    assert [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []


def test_probability_matched_members_take_the_extrapolation_values() -> None:
    torch.manual_seed(0)
    context = _moving_rain(4)
    model = create_model("extrapolation_nowcast_ensemble", **SMALL, probability_matching=True).eval()
    torch.nn.init.normal_(model.member_out.weight, std=0.1)
    with torch.no_grad():
        members = model.ensemble(context, 2, members=3)
    reference = _pysteps_extrapolation(context, 2)
    for m in range(3):
        for k in range(2):
            wet = members[0, m, k].flatten()
            wet = wet[wet > 0].sort().values
            assert torch.equal(wet, reference[0, k].flatten().sort().values[-len(wet) :])


def test_each_noise_channel_is_four_times_coarser_than_the_last() -> None:
    model = create_model("extrapolation_nowcast_ensemble", **SMALL, noise_channels=3, noise_pixels=2)
    noise = model._noise(64, 40, 40, torch.Generator().manual_seed(0), like=torch.zeros(1))
    assert noise.shape == (64, 3, 40, 40)
    roughness = (noise.diff(dim=-1).abs().mean(dim=(0, 2, 3)) / noise.std(dim=(0, 2, 3))).tolist()
    # Bilinear ramps between grid points 2, 8 and 32 pixels apart: neighbours differ less the coarser the grid.
    assert roughness[0] > 2 * roughness[1] > 4 * roughness[2] > 0, roughness
    torch.testing.assert_close(noise.std(dim=(0, 2, 3)), torch.ones(3), rtol=0.5, atol=0.0)


def test_probability_matching_gives_the_reference_values_at_the_forecast_ranks() -> None:
    forecast = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 0.5]])
    reference = torch.tensor([[9.0, 0.0, 4.0], [1.0, 0.0, 2.0]])
    matched = probability_match(forecast, reference)
    # Ranks 0.5 < 1 < 2 < 3 take 1, 2, 4, 9; the forecast's dry pixels stay dry (the reference's two zeros went to
    # them by rank anyway).
    torch.testing.assert_close(matched, torch.tensor([[0.0, 9.0, 2.0], [4.0, 0.0, 1.0]]), rtol=0, atol=0)
    # A forecast wetter than the reference: its weakest rain takes the reference's zeros (drizzle goes).
    drizzle = torch.tensor([[0.1, 5.0], [0.2, 3.0]])
    torch.testing.assert_close(
        probability_match(drizzle, torch.tensor([[0.0, 0.0], [7.0, 8.0]])), torch.tensor([[0.0, 8.0], [0.0, 7.0]])
    )
    fields = torch.rand(2, 3, 1, 5, 6) * (torch.rand(2, 3, 1, 5, 6) > 0.5)
    assert torch.equal(probability_match(fields, fields), fields)
    with pytest.raises(ValueError, match="one shape"):
        probability_match(fields, fields[..., :5])


def test_matching_in_squares_keeps_each_squares_rain_in_that_square() -> None:
    # Left square: a broad weak area; right square: one small strong cell. Matched over the whole field the
    # forecast's broad area takes the strongest values and the right square goes dry; matched in 2 x 2 squares
    # each square keeps its own values.
    forecast = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.5, 0.5, 0.0, 0.1]])
    reference = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 9.0]])
    assert float(probability_match(forecast, reference)[:, 2:].sum()) == 0.0
    in_squares = probability_match(forecast, reference, tile=2)
    torch.testing.assert_close(in_squares, torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 9.0]]))
    # Frames that are not a multiple of the square: every square, the cut ones too, is matched on its own.
    torch.manual_seed(0)
    forecast, reference = torch.rand(2, 3, 11, 7).clamp_min(0.3) - 0.3, torch.rand(2, 3, 11, 7) * 5
    matched = probability_match(forecast, reference, tile=4)
    for top in range(0, 11, 4):
        for left in range(0, 7, 4):
            square = (..., slice(top, top + 4), slice(left, left + 4))
            alone = probability_match(forecast[square].contiguous(), reference[square].contiguous())
            assert torch.equal(matched[square], alone)
    assert torch.equal(probability_match(forecast, reference, tile=64), probability_match(forecast, reference))
    with pytest.raises(ValueError, match="tile"):
        probability_match(forecast, reference, tile=0)


def test_the_model_matches_in_squares_when_told() -> None:
    torch.manual_seed(0)
    context = _moving_rain(4)
    model = create_model("extrapolation_nowcast", **SMALL, match_tile=8)
    torch.nn.init.normal_(model.net.head.weight, std=0.3)
    with torch.no_grad():
        raw, expected = model.train()(context, 3), _pysteps_extrapolation(context, 3)
        assert torch.equal(model.eval()(context, 3), probability_match(raw, expected, tile=8))
    with pytest.raises(ValueError, match="match_tile"):
        create_model("extrapolation_nowcast", match_tile=-1)


def test_a_trained_model_keeps_the_extrapolation_intensities_in_eval_mode_only() -> None:
    torch.manual_seed(0)
    context = _moving_rain(4)
    expected = _pysteps_extrapolation(context, 3)
    model = create_model("extrapolation_nowcast", **SMALL)
    torch.nn.init.normal_(model.net.head.weight, std=0.3)
    with torch.no_grad():
        raw = model.train()(context, 3)
        matched = model.eval()(context, 3)
    assert not torch.equal(raw, expected)
    # Matched: the forecast's wet pixels hold the extrapolation's largest values, in the raw forecast's order.
    for k in range(3):
        wet = matched[0, k, 0] > 0
        assert torch.equal(wet, raw[0, k, 0] > 0) or wet.sum() < (raw[0, k, 0] > 0).sum()
        top = expected[0, k, 0].flatten().sort().values[-int(wet.sum()) :]
        torch.testing.assert_close(matched[0, k, 0][wet].sort().values, top, rtol=0, atol=0)
    assert torch.equal(matched.flatten(2).argmax(-1), raw.flatten(2).argmax(-1))


def test_backtracking_is_exact_at_zero_and_a_shift_with_zeros_flowing_in() -> None:
    frames = torch.rand(2, 1, 6, 7)
    assert torch.equal(backtrack_exact(frames, torch.zeros(2, 2, 6, 7)), frames)
    displacement = torch.zeros(2, 2, 6, 7)
    displacement[:, 0], displacement[:, 1] = 2.0, -1.0  # 2 px right, 1 px up
    expected = torch.zeros_like(frames)
    expected[..., :5, 2:] = frames[..., 1:, :5]
    torch.testing.assert_close(backtrack_exact(frames, displacement), expected, rtol=0, atol=0)
    half = torch.zeros(2, 2, 6, 7)
    half[:, 0] = 0.5
    torch.testing.assert_close(backtrack_exact(frames, half)[..., 1:], (frames[..., 1:] + frames[..., :-1]) / 2)


def test_the_clamp_passes_gradient_where_it_holds_the_value_at_zero() -> None:
    x = torch.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    y = non_negative(x)
    assert torch.equal(y, torch.tensor([0.0, 0.0, 2.0]))
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones(3))


def test_smoothing_weights_of_zero_change_nothing_and_of_one_blur_up_to_their_scale() -> None:
    torch.manual_seed(0)
    fields = torch.rand(2, 3, 1, 20, 24) * 5
    scales = (1.0, 2.0, 4.0)
    bands = detail_bands(fields, scales)
    assert torch.equal(smooth(fields, torch.zeros(2, 3, 3, 20, 24), bands), fields)
    up_to_second = torch.zeros(2, 3, 3, 20, 24)
    up_to_second[:, :, :2] = 1.0
    expected = gaussian_blur(gaussian_blur(fields.flatten(0, 1), 1.0), 2.0).unflatten(0, (2, 3))
    torch.testing.assert_close(smooth(fields, up_to_second, bands), expected, rtol=0, atol=1e-5)
    # A blur keeps a constant field (edge values repeated, taps summing to 1) and the mean of a smooth one.
    constant = torch.full((1, 1, 9, 7), 3.0)
    torch.testing.assert_close(gaussian_blur(constant, 4.0), constant, rtol=0, atol=1e-6)
    blurred = gaussian_blur(fields.flatten(0, 1), 2.0)
    assert blurred.std() < fields.std() and blurred.shape == (6, 1, 20, 24)


def test_smoothing_weights_are_clamped_to_the_unit_interval_with_gradient_everywhere() -> None:
    x = torch.tensor([-0.5, 0.0, 0.3, 1.7], requires_grad=True)
    y = unit_interval(x)
    assert torch.equal(y, torch.tensor([0.0, 0.0, 0.3, 1.0]))
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones(4))


def test_the_trained_smoothing_output_blurs_the_forecast() -> None:
    torch.manual_seed(0)
    model = create_model("extrapolation_nowcast", **SMALL, smoothing_scales=[2.0], probability_matching=False)
    context = _moving_rain(4)
    with torch.no_grad():
        plain = model(context, 2)
        model.net.head.bias[4] = 1.0  # the first smoothing weight: 1 everywhere
        blurred = model(context, 2)
    assert not torch.equal(plain, blurred)
    torch.testing.assert_close(blurred.sum(), plain.sum(), rtol=0.05, atol=0.0)  # moved around, not made
    assert blurred.amax() < plain.amax()


def test_saved_and_loaded_with_its_config(tmp_path: object) -> None:
    model = create_model("extrapolation_nowcast_ensemble", **SMALL, noise_pixels=4, members=3, default_horizon=2)
    model.save_pretrained(tmp_path)  # type: ignore[arg-type]
    loaded = from_pretrained(tmp_path)  # type: ignore[arg-type]
    assert isinstance(loaded, ExtrapolationNowcast) and loaded.config == model.config


def test_bad_inputs_and_arguments_are_refused() -> None:
    model = create_model("extrapolation_nowcast", **SMALL)
    context = _moving_rain(4)
    nan = context.clone()
    nan[0, 0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="context must be finite rain rates"):
        model(nan)
    with pytest.raises(ValueError, match=r"rain rates in mm/h \(>= 0\)"):
        model(context - 1.0)
    with pytest.raises(ValueError, match="context must have 1 channels"):
        model(context.expand(-1, -1, 2, -1, -1))
    with pytest.raises(ValueError, match="at least motion_frames=3 frames"):
        model(context[:, :2])
    with pytest.raises(ValueError, match="ensemble needs a model with noise_channels >= 1"):
        model.ensemble(context, 2, members=2)
    with pytest.raises(ValueError, match="members must be an int >= 1"):
        create_model("extrapolation_nowcast_ensemble", **SMALL).ensemble(context, 2, members=0)
    with pytest.raises(ValueError, match="base_channels must be a multiple of 4"):
        ExtrapolationNowcast(base_channels=6)
    for scales in ([2.0, 1.0], [0.0], "2"):
        with pytest.raises(ValueError, match="smoothing_scales must be"):
            ExtrapolationNowcast(smoothing_scales=scales)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="probability_matching must be True or False"):
        ExtrapolationNowcast(probability_matching=1)  # type: ignore[arg-type]


def test_backtracking_indexes_pixels_in_float32_under_bfloat16() -> None:
    """bfloat16 holds whole numbers exactly only up to 256: a bfloat16 displacement (as autocast gives) must still
    move every pixel of a wide frame by exactly one column."""
    frames = torch.rand(1, 1, 4, 300, generator=torch.Generator().manual_seed(0))
    shift = torch.zeros(1, 2, 4, 300, dtype=torch.bfloat16)
    shift[:, 0] = 1.0
    moved = backtrack_exact(frames, shift)
    assert torch.equal(moved[..., 1:], frames[..., :-1]) and bool((moved[..., 0] == 0).all())
