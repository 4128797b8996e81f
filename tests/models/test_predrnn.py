"""PredRNN and PredRNN-V2: OpenSTL's sizes and costs, the forecast interface, sampling masks, learning, and
OpenSTL's own outputs reproduced from its weights."""

import pytest
import torch
from torch import Tensor, nn

from convlstm.interop import model_from_openstl, openstl_patch_order, predrnn_from_openstl
from convlstm.models import PredRNN, PredRNNv2, create_model
from convlstm.tasks.losses import decoupling_loss
from tests.models.openstl_golden import AFT, GOLDEN, GOLDEN_PREDRNN, PRE
from tests.tolerances import FLOAT32_REORDERED, FLOAT64_REORDERED

# Measured by building OpenSTL's own PredRNN_Model and PredRNNv2_Model (openstl/models/predrnn*_model.py at
# chengtan9907/OpenSTL HEAD, their module files exec'd in a scratch script) with configs/mmnist/PredRNN*.py
# (num_hidden 128,128,128,128, filter_size 5, patch_size 4, stride 1, layer_norm 0, in_shape (20, 1, 64, 64)) and
# summing p.numel() over their parameters. OpenSTL's table rounds them to 23.8M and 23.9M.
OPENSTL_PREDRNN_PARAMETERS = 23_838_720
OPENSTL_PREDRNNV2_PARAMETERS = 23_855_104


def _count(name: str) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in create_model(name).parameters())


def test_parameter_counts_equal_openstl() -> None:
    assert _count("predrnn_mmnist") == OPENSTL_PREDRNN_PARAMETERS
    assert _count("predrnnv2_mmnist") == OPENSTL_PREDRNNV2_PARAMETERS


@pytest.mark.parametrize(("name", "table"), [("predrnn_mmnist", 116.0e9), ("predrnnv2_mmnist", 116.6e9)])
def test_convolution_cost_matches_openstl_table(name: str, table: float) -> None:
    """OpenSTL's video_benchmarks.md counts FLOPs with fvcore (one multiply-add = one FLOP) for the 19 steps of a
    10 -> 10 Moving MNIST sequence; the convolutions are all of it that fvcore counts here."""
    with torch.device("meta"):
        model = create_model(name)
    assert model.conv_flops(64, 64, steps=19) == pytest.approx(table, rel=0.01)


@pytest.mark.parametrize("name", ["predrnn_tiny", "predrnnv2_tiny"])
def test_convolution_cost_counts_what_runs(name: str) -> None:
    """conv_flops against the multiply-adds of every convolution actually run (forward hooks)."""
    model = create_model(name)
    counted = [0]

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        assert isinstance(module, nn.Conv2d)
        per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        counted[0] += output.numel() * per_output  # a batch of one sequence (the adapter's: its steps)

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(hook)
    with torch.no_grad():
        if isinstance(model, PredRNNv2):
            model.forward_with_increments(torch.rand(1, 3, 1, 16, 16), 2)
        else:
            model(torch.rand(1, 3, 1, 16, 16), 2)
    assert model.conv_flops(16, 16, steps=4) == counted[0]


def test_shapes_and_the_forecast_continues_the_frame_by_frame_predictions() -> None:
    torch.manual_seed(0)
    model = create_model("predrnn_tiny", in_channels=2).eval()
    context = torch.rand(2, 3, 2, 16, 16)
    with torch.no_grad():
        forecast = model(context, 4)
        assert forecast.shape == (2, 4, 2, 16, 16)
        predictions, state = model.one_step(context)
        torch.testing.assert_close(forecast[:, 0], predictions[:, -1], rtol=0, atol=0)
        following, _ = model.one_step(forecast[:, :1], state)
        torch.testing.assert_close(forecast[:, 1], following[:, 0], **FLOAT32_REORDERED)
    layers, m = state
    assert len(layers) == 2 and m.shape == layers[0][0].shape == (2, 8, 4, 4)


def test_teacher_forcing_and_context_masks() -> None:
    torch.manual_seed(0)
    model = create_model("predrnn_tiny").eval()
    context, targets = torch.rand(2, 4, 1, 16, 16), torch.rand(2, 3, 1, 16, 16)
    with torch.no_grad():
        free = model(context, 3)
        true_context = model(context, 3, context_teacher_forcing=torch.ones(3, dtype=torch.bool))
        torch.testing.assert_close(true_context, free, rtol=0, atol=0)
        # A context read from the model's own predictions after its first frame: a forecast from one frame.
        own = model(context, 3, context_teacher_forcing=torch.zeros(2, 3, dtype=torch.bool))
        from_one = model(context[:, :1], 6)[:, 3:]
        torch.testing.assert_close(own, from_one, **FLOAT32_REORDERED)
        forced = model(context, 3, targets, torch.ones(3, dtype=torch.bool))
        # Fed the true frames, the forecast is the model's one-step predictions of the whole sequence.
        whole, _ = model.one_step(torch.cat([context, targets], dim=1))
        torch.testing.assert_close(forced, whole[:, 3:6], **FLOAT32_REORDERED)
    with pytest.raises(ValueError, match=r"context_teacher_forcing must have shape \(3,\) or \(2, 3\)"):
        model(context, 3, context_teacher_forcing=torch.ones(4, dtype=torch.bool))


def test_v2_increments_and_predictions() -> None:
    torch.manual_seed(0)
    model = create_model("predrnnv2_tiny").eval()
    context = torch.rand(2, 3, 1, 16, 16)
    with torch.no_grad():
        predictions, (delta_c, delta_m) = model.forward_with_increments(context, 2)
        torch.testing.assert_close(predictions, model(context, 2), rtol=0, atol=0)
    assert delta_c.shape == delta_m.shape == (2, 4, 2, 8, 4, 4)  # (B, T_in + horizon - 1 steps, layers, F, h, w)


def test_a_few_training_steps_lower_the_loss() -> None:
    torch.manual_seed(0)
    model = create_model("predrnnv2_tiny").train()
    frame = torch.rand(4, 1, 1, 16, 16)
    context, target = frame.expand(4, 3, 1, 16, 16), frame.expand(4, 2, 1, 16, 16)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        predictions, increments = model.forward_with_increments(context, 2)
        loss = (predictions - target).square().mean() + 0.1 * decoupling_loss(*increments)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        PredRNN(kernel_size=4)
    with pytest.raises(ValueError, match="num_layers"):
        PredRNN(num_layers=0)
    model = create_model("predrnn_tiny")
    with pytest.raises(ValueError, match=r"context must have H and W divisible by patch_size=4, got 10x10"):
        model(torch.rand(1, 2, 1, 10, 10))


def test_patch_order_maps_openstl_layout_to_ours() -> None:
    frames = torch.rand(2, 3, 12, 12)  # (B, C, H, W)
    ours = torch.nn.functional.pixel_unshuffle(frames, 2)  # (B, C p^2, h, w)
    theirs = frames.permute(0, 2, 3, 1).reshape(2, 6, 2, 6, 2, 3).transpose(2, 3).reshape(2, 6, 6, 12)
    torch.testing.assert_close(ours, theirs.permute(0, 3, 1, 2)[:, openstl_patch_order(3, 2)], rtol=0, atol=0)


def test_openstl_weights_reproduce_openstl_outputs() -> None:
    """OpenSTL's PredRNNv2_Model run with random weights (``python -m tests.models.openstl_golden /path/to/OpenSTL``
    wrote the fixture): the same weights here give the same forecasts, with and without reverse scheduled sampling,
    and the same decoupling term. Tolerance: float32 sums in another order (FLOAT32_REORDERED)."""
    golden = torch.load(GOLDEN, weights_only=True)
    model = predrnn_from_openstl(golden["state_dict"], in_channels=2, default_horizon=AFT).eval()
    assert isinstance(model, PredRNNv2)
    frames, mask = golden["frames"], golden["mask"]
    context, targets = frames[:, :PRE], frames[:, PRE:]
    with torch.no_grad():
        torch.testing.assert_close(model(context), golden["forecast"], **FLOAT32_REORDERED)
        teacher = torch.cat([mask[:, PRE - 1 :], torch.zeros(2, 1, dtype=torch.bool)], dim=1)  # last: unused
        sampled, increments = model.forward_with_increments(
            context, AFT, targets, teacher, context_teacher_forcing=mask[:, : PRE - 1]
        )
    torch.testing.assert_close(sampled, golden["sampled_forecast"], **FLOAT32_REORDERED)
    torch.testing.assert_close(decoupling_loss(*increments), golden["decoupling"], **FLOAT32_REORDERED)


def test_openstl_predrnn_weights_reproduce_openstl_outputs() -> None:
    """OpenSTL's PredRNN_Model (3 layers of 4, 2x2 patches of 8x8 frames of 2 channels) run once in float64 with
    random weights (``python -m tests.models.openstl_golden /path/to/OpenSTL predrnn`` wrote the fixture): the same
    weights here, without PredRNN-V2's adapter, give the same predictions of the context's frames and the same
    free-running forecast."""
    golden = torch.load(GOLDEN_PREDRNN, weights_only=True)
    model = model_from_openstl(golden["state_dict"], in_channels=2, default_horizon=AFT).eval()
    assert type(model) is PredRNN and model.config.num_layers == 3
    frames, expected = golden["frames"], golden["predictions"]  # predictions of frames 1 .. T - 1
    with torch.no_grad():
        torch.testing.assert_close(model(frames[:, :PRE]), expected[:, PRE - 1 :], **FLOAT64_REORDERED)
        one_step, _ = model.one_step(frames[:, :PRE])
    torch.testing.assert_close(one_step, expected[:, :PRE], **FLOAT64_REORDERED)


def test_the_importer_refuses_other_weights() -> None:
    with pytest.raises(ValueError, match="expected OpenSTL PredRNN weights"):
        predrnn_from_openstl({"weight": torch.zeros(1)})
    golden = torch.load(GOLDEN, weights_only=True)
    with pytest.raises(ValueError, match="not in_channels=3 times a square patch"):
        predrnn_from_openstl(golden["state_dict"], in_channels=3)
