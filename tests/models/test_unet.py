from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from convlstm.models import create_model, from_pretrained
from convlstm.models.unet import ConvLSTMUNet, ConvLSTMUNetForecaster

SEGMENTATION = ["convlstm_unet", "convlstm_unet_gru", "convlstm_unet_bidirectional", "unet_per_frame"]
SMALL: dict[str, Any] = {"base_channels": 4}  # GroupNorm's 4 groups still divide it


def _frames(batch: int = 2, steps: int = 3, channels: int = 1, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, steps, channels, size, size, generator=torch.Generator().manual_seed(seed))


def test_default_has_between_100k_and_1m_parameters() -> None:
    net = create_model("convlstm_unet")
    count = sum(p.numel() for p in net.parameters())
    assert 100_000 <= count <= 1_000_000, count
    assert net.config.base_channels == 12
    assert net.config.kernel_size == 3


@pytest.mark.parametrize("name", SEGMENTATION)
def test_segmentation_shapes_and_finite_logits(name: str) -> None:
    torch.manual_seed(0)
    net = create_model(name, num_classes=3, in_channels=2, **SMALL)
    logits, state = net(_frames(channels=2))
    assert logits.shape == (2, 3, 3, 16, 16)
    assert torch.isfinite(logits).all()
    assert len(state) == net.config.depth + 1


def test_predict_proba_is_softmax_over_classes() -> None:
    torch.manual_seed(0)
    net = create_model("convlstm_unet", num_classes=4, **SMALL).eval()
    frames = _frames()
    probabilities = net.predict_proba(frames)
    logits, _ = net(frames)
    assert probabilities.shape == (2, 3, 4, 16, 16)
    torch.testing.assert_close(probabilities.sum(dim=2), torch.ones(2, 3, 16, 16))
    # cross-entropy on logits equals NLL on the log of predict_proba: the two agree on the class axis
    labels = torch.randint(0, 4, (2, 3, 16, 16), generator=torch.Generator().manual_seed(1))
    ce = F.cross_entropy(logits.flatten(0, 1), labels.flatten(0, 1))
    nll = F.nll_loss(probabilities.log().flatten(0, 1), labels.flatten(0, 1))
    torch.testing.assert_close(ce, nll, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", [*SEGMENTATION, "convlstm_unet_forecaster"])
def test_every_parameter_gets_a_gradient(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, **SMALL)
    frames = _frames()
    if name == "convlstm_unet_forecaster":
        out = model(frames, horizon=2)
    else:
        out, _ = model(frames)
    (out * torch.randn_like(out)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


@pytest.mark.parametrize("name", ["convlstm_unet", "convlstm_unet_gru"])
@pytest.mark.parametrize("train", [False, True])
def test_frame_by_frame_equals_one_call(name: str, train: bool) -> None:
    torch.manual_seed(0)
    net = create_model(name, **SMALL).train(train)
    frames = _frames(steps=4)
    whole, whole_state = net(frames)
    state = None
    for t in range(4):
        step, state = net(frames[:, t : t + 1], state)
        torch.testing.assert_close(step[:, 0], whole[:, t], atol=1e-5, rtol=1e-5)
    assert state is not None
    torch.testing.assert_close(state[-1][0][1], whole_state[-1][0][1], atol=1e-5, rtol=1e-5)


def test_dependence_on_time_follows_the_variant() -> None:
    """Unidirectional: causal. Bidirectional: sees later frames. Per-frame: sees its own frame only."""
    frames = _frames(steps=4)
    changed = frames.clone()
    changed[:, 2] = 1.0 - changed[:, 2]

    def differs(name: str) -> list[bool]:
        torch.manual_seed(0)
        net = create_model(name, **SMALL).eval()
        a, _ = net(frames)
        b, _ = net(changed)
        return [not torch.allclose(a[:, t], b[:, t]) for t in range(4)]

    assert differs("convlstm_unet") == [False, False, True, True]
    assert differs("convlstm_unet_bidirectional") == [True, True, True, True]
    assert differs("unet_per_frame") == [False, False, True, False]


def test_bilinear_upsampling_and_batch_norm_run() -> None:
    torch.manual_seed(0)
    net = create_model("convlstm_unet", upsample="bilinear", norm="batch", depth=3, **SMALL)
    logits, state = net(_frames())
    assert logits.shape == (2, 3, 2, 16, 16)
    assert len(state) == 4


def test_seeded_construction_is_deterministic() -> None:
    outputs = []
    for _ in range(2):
        torch.manual_seed(7)
        net = create_model("convlstm_unet", **SMALL)
        outputs.append(net(_frames())[0])
    torch.testing.assert_close(outputs[0], outputs[1], atol=0, rtol=0)


@pytest.mark.parametrize("name", ["convlstm_unet_bidirectional", "convlstm_unet_forecaster"])
def test_save_and_load_round_trip(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model(name, **SMALL).eval()
    frames = _frames()
    loaded = from_pretrained(model.save_pretrained(tmp_path / name)).eval()
    assert type(loaded) is type(model)
    assert loaded.config == model.config
    if isinstance(model, ConvLSTMUNetForecaster):
        torch.testing.assert_close(loaded(frames, horizon=3), model(frames, horizon=3), atol=0, rtol=0)
    else:
        torch.testing.assert_close(loaded(frames)[0], model(frames)[0], atol=0, rtol=0)


def test_forecaster_rollout_feeds_its_predictions_back() -> None:
    torch.manual_seed(0)
    model = create_model("convlstm_unet_forecaster", **SMALL).eval()
    context = _frames(steps=3)
    predictions = model(context, horizon=4)
    assert predictions.shape == (2, 4, 1, 16, 16)
    assert ((predictions >= 0) & (predictions <= 1)).all()
    # By hand: the one-step output after the context, then each prediction fed as the next frame.
    out, state = model.one_step(context)
    expected = [out[:, -1]]
    for _ in range(3):
        out, state = model.one_step(expected[-1].unsqueeze(1), state)
        expected.append(out[:, 0])
    torch.testing.assert_close(predictions, torch.stack(expected, 1), atol=1e-5, rtol=1e-5)


def test_forecaster_full_teacher_forcing_equals_one_step_over_the_true_sequence() -> None:
    torch.manual_seed(0)
    model = create_model("convlstm_unet_forecaster", **SMALL).eval()
    sequence = _frames(steps=6)
    context, targets = sequence[:, :3], sequence[:, 3:]
    forced = model(context, horizon=3, targets=targets, teacher_forcing=torch.ones(3, dtype=torch.bool))
    one_step, _ = model.one_step(sequence[:, :5])
    torch.testing.assert_close(forced, one_step[:, 2:5], atol=1e-5, rtol=1e-5)
    # A per-sequence mask: sequence 0 forced, sequence 1 free-running.
    mask = torch.tensor([[True, True, True], [False, False, False]])
    mixed = model(context, horizon=3, targets=targets, teacher_forcing=mask)
    free = model(context, horizon=3)
    torch.testing.assert_close(mixed[0], forced[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mixed[1], free[1], atol=1e-5, rtol=1e-5)


def test_sizes_not_divisible_by_two_to_the_depth_raise() -> None:
    net = create_model("convlstm_unet", **SMALL)
    with pytest.raises(ValueError, match=r"divisible by 2\*\*depth \(depth=2\) = 4, got 18x16"):
        net(torch.rand(1, 2, 1, 18, 16))
    forecaster = create_model("convlstm_unet_forecaster", depth=3, **SMALL)
    with pytest.raises(ValueError, match="= 8, got 12x12"):
        forecaster(torch.rand(1, 2, 1, 12, 12), horizon=2)


def test_bad_arguments_raise_clear_errors() -> None:
    net = create_model("convlstm_unet", **SMALL)
    with pytest.raises(ValueError, match="1 channels in dim 2"):
        net(torch.rand(1, 2, 3, 16, 16))
    with pytest.raises(ValueError, match="depth \\+ 1 = 3 per-scale states"):
        net(torch.rand(1, 2, 1, 16, 16), [[]])
    with pytest.raises(ValueError, match="norm_groups must divide base_channels=6"):
        ConvLSTMUNet(base_channels=6)
    with pytest.raises(ValueError, match="recurrent=False has no recurrent layers"):
        create_model("unet_per_frame", bidirectional=True)
    with pytest.raises(ValueError, match="output_activation must be 'linear'"):
        ConvLSTMUNet(output_activation="sigmoid")
    with pytest.raises(ValueError, match="cell must be one of"):
        ConvLSTMUNet(cell="rnn")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_classes, not out_channels"):
        create_model("convlstm_unet", out_channels=3)
    with pytest.raises(ValueError, match="predict_proba needs head='segmentation'"):
        ConvLSTMUNet(head="regression", **SMALL).predict_proba(torch.rand(1, 1, 1, 16, 16))
