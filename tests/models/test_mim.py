"""MIM: OpenSTL's sizes and costs, the forecast interface, the MIM-Ns' first step, learning, and OpenSTL's own
outputs reproduced from its weights."""

import pytest
import torch
from torch import Tensor, nn

from convlstm.interop import mim_from_openstl, model_from_openstl
from convlstm.models import MIM, create_model
from tests.models.openstl_golden import AFT, GOLDEN_MIM, PRE
from tests.tolerances import FLOAT32_REORDERED, FLOAT64_REORDERED

# Measured by building OpenSTL's own MIM_Model (openstl/models/mim_model.py with openstl/modules/mim_modules.py and
# predrnn_modules.py at chengtan9907/OpenSTL HEAD, exec'd in a scratch script) with configs/mmnist/MIM.py
# (num_hidden 128,128,128,128, filter_size 5, patch_size 4, stride 1, layer_norm 0, in_shape (10, 1, 64, 64)):
# p.numel() summed over its parameters, and fvcore's FlopCountAnalysis of its forward on the input OpenSTL's exp.py
# gives it (1 x 20 frames, 9 flags). OpenSTL's table rounds them to 38.0M and 179.2G.
OPENSTL_PARAMETERS = 38_043_648
OPENSTL_FVCORE_FLOPS = 179_180_666_880
# Its three MIM-N modules each hold a 1x1 conv_last (2F -> F) that their forward never calls.
OPENSTL_UNUSED = 3 * 2 * 128 * 128


def test_parameter_count_is_openstls_less_its_unused_convolutions() -> None:
    with torch.device("meta"):
        model = create_model("mim_mmnist")
    assert sum(p.numel() for p in model.parameters()) == OPENSTL_PARAMETERS - OPENSTL_UNUSED


def test_convolution_cost_equals_fvcores_count_of_openstls_model() -> None:
    """fvcore traces OpenSTL's forward, which runs the MIM-Ns at the first step on zeros and discards the result:
    the trace drops that dead code, and this model does not run it."""
    with torch.device("meta"):
        model = create_model("mim_mmnist")
    assert model.conv_flops(64, 64, steps=19) == OPENSTL_FVCORE_FLOPS
    assert model.conv_flops(64, 64, steps=19) == pytest.approx(179.2e9, rel=0.001)  # OpenSTL's table


def test_convolution_cost_counts_what_runs() -> None:
    model = create_model("mim_tiny", num_layers=3)
    counted = [0]

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        assert isinstance(module, nn.Conv2d)
        counted[0] += output.numel() * module.in_channels * module.kernel_size[0] * module.kernel_size[1]

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.rand(1, 3, 1, 16, 16), 2)
    assert model.conv_flops(16, 16, steps=4) == counted[0]


def test_shapes_and_the_forecast_continues_the_frame_by_frame_predictions() -> None:
    torch.manual_seed(0)
    model = create_model("mim_tiny", in_channels=2, num_layers=3).eval()
    context = torch.rand(2, 3, 2, 16, 16)
    with torch.no_grad():
        forecast = model(context, 4)
        assert forecast.shape == (2, 4, 2, 16, 16)
        predictions, state = model.one_step(context)
        torch.testing.assert_close(forecast[:, 0], predictions[:, -1], rtol=0, atol=0)
        following, _ = model.one_step(forecast[:, :1], state)
        torch.testing.assert_close(forecast[:, 1], following[:, 0], **FLOAT32_REORDERED)
    layers, m, differences = state
    assert [len(layer) for layer in layers] == [2, 3, 3] and len(differences) == 2
    assert m.shape == differences[0][0].shape == (2, 8, 4, 4)


def test_the_mim_ns_start_at_the_second_step() -> None:
    """At the first step there is no earlier hidden state to take a difference from: the MIM-Ns keep their zero
    state and the blocks read zeros; from the second step on they read layer 1's change."""
    torch.manual_seed(0)
    model = create_model("mim_tiny").eval()
    frames = torch.rand(1, 2, 1, 16, 16)
    with torch.no_grad():
        _, (_, _, first) = model.one_step(frames[:, :1])
        _, (_, _, second) = model.one_step(frames[:, 1:], model.one_step(frames[:, :1])[1])
    assert all(not t.any() for t in first[0]) and all(t.abs().sum() > 0 for t in second[0])


def test_the_frame_size_is_fixed() -> None:
    model = create_model("mim_tiny")
    with pytest.raises(ValueError, match=r"context must be 16x16 frames \(H x W: MIM's peepholes are per pixel\)"):
        model(torch.rand(1, 2, 1, 32, 32))
    with pytest.raises(ValueError, match="height and width must be divisible by patch_size=4, got 18x16"):
        MIM(height=18, width=16)
    with pytest.raises(ValueError, match="num_layers must be an int >= 2"):
        MIM(num_layers=1)


def test_a_few_training_steps_lower_the_loss() -> None:
    torch.manual_seed(0)
    model = create_model("mim_tiny").train()
    frame = torch.rand(4, 1, 1, 16, 16)
    context, target = frame.expand(4, 3, 1, 16, 16), frame.expand(4, 2, 1, 16, 16)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = (model(context, 2) - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_openstl_weights_reproduce_openstl_outputs() -> None:
    """OpenSTL's MIM_Model (an ST-LSTM and two MIM blocks) run once, fresh, in float64 with random weights
    (``python -m tests.models.openstl_golden /path/to/OpenSTL mim`` wrote the fixture): the same weights here give
    the same predictions of the context's frames and the same free-running forecast."""
    golden = torch.load(GOLDEN_MIM, weights_only=True)
    model = model_from_openstl(golden["state_dict"], in_channels=2, default_horizon=AFT).eval()
    assert isinstance(model, MIM) and (model.config.num_layers, model.config.height) == (3, 8)
    frames, expected = golden["frames"], golden["predictions"]  # predictions of frames 1 .. T - 1
    with torch.no_grad():
        torch.testing.assert_close(model(frames[:, :PRE]), expected[:, PRE - 1 :], **FLOAT64_REORDERED)
        one_step, _ = model.one_step(frames[:, :PRE])
    torch.testing.assert_close(one_step, expected[:, :PRE], **FLOAT64_REORDERED)


def test_the_importer_refuses_other_weights() -> None:
    golden = torch.load(GOLDEN_MIM, weights_only=True)
    with pytest.raises(ValueError, match="expected OpenSTL MIM weights"):
        mim_from_openstl({"conv_last.weight": torch.zeros(1)})
    only_st_lstm = {k: v for k, v in golden["state_dict"].items() if not k.startswith("stlstm_layer_diff.")}
    with pytest.raises(ValueError, match="with MIM-N modules"):
        mim_from_openstl(only_st_lstm, in_channels=2)
    without_peephole = {k: v for k, v in golden["state_dict"].items() if k != "stlstm_layer.2.oc_weight"}
    with pytest.raises(ValueError, match=r"missing \['cells.2.stationary.peephole_o'\]"):
        mim_from_openstl(without_peephole, in_channels=2)
