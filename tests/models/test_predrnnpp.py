"""PredRNN++: OpenSTL's sizes and costs, the forecast interface, learning, and OpenSTL's own outputs reproduced from
its weights."""

import pytest
import torch
from torch import Tensor, nn

from convlstm.interop import model_from_openstl, predrnnpp_from_openstl
from convlstm.models import PredRNNpp, create_model
from tests.models.openstl_golden import AFT, GOLDEN_PREDRNNPP, PRE
from tests.tolerances import FLOAT32_REORDERED, FLOAT64_REORDERED

# Measured by building OpenSTL's own PredRNNpp_Model (openstl/models/predrnnpp_model.py and
# openstl/modules/predrnnpp_modules.py at chengtan9907/OpenSTL HEAD, exec'd in a scratch script) with
# configs/mmnist/PredRNNpp.py (num_hidden 128,128,128,128, filter_size 5, patch_size 4, stride 1, layer_norm 0,
# in_shape (10, 1, 64, 64)): p.numel() summed over its parameters, and fvcore's FlopCountAnalysis of its forward
# on the input OpenSTL's exp.py gives it (1 x 20 frames, 9 flags). OpenSTL's table rounds them to 38.6M and 171.7G.
OPENSTL_PARAMETERS = 38_584_320
OPENSTL_FVCORE_FLOPS = 171_735_777_280
# Its Causal LSTM cells each hold a conv_o (2F -> F, 5x5) that their forward never calls.
OPENSTL_UNUSED = 4 * 2 * 128 * 128 * 5 * 5


def test_parameter_count_is_openstls_less_its_unused_convolutions() -> None:
    with torch.device("meta"):
        model = create_model("predrnnpp_mmnist")
    assert sum(p.numel() for p in model.parameters()) == OPENSTL_PARAMETERS - OPENSTL_UNUSED


def test_convolution_cost_equals_fvcores_count_of_openstls_model() -> None:
    with torch.device("meta"):
        model = create_model("predrnnpp_mmnist")
    assert model.conv_flops(64, 64, steps=19) == OPENSTL_FVCORE_FLOPS
    assert model.conv_flops(64, 64, steps=19) == pytest.approx(171.7e9, rel=0.001)  # OpenSTL's table


def test_convolution_cost_counts_what_runs() -> None:
    """conv_flops against the multiply-adds of every convolution actually run (forward hooks)."""
    model = create_model("predrnnpp_tiny", num_layers=3)
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
    model = create_model("predrnnpp_tiny", in_channels=2, num_layers=3).eval()
    context = torch.rand(2, 3, 2, 16, 16)
    with torch.no_grad():
        forecast = model(context, 4)
        assert forecast.shape == (2, 4, 2, 16, 16)
        predictions, state = model.one_step(context)
        torch.testing.assert_close(forecast[:, 0], predictions[:, -1], rtol=0, atol=0)
        following, _ = model.one_step(forecast[:, :1], state)
        torch.testing.assert_close(forecast[:, 1], following[:, 0], **FLOAT32_REORDERED)
    layers, m, z = state
    assert len(layers) == 3 and m.shape == z.shape == layers[0][0].shape == (2, 8, 4, 4)


def test_reverse_scheduled_sampling_reads_predictions_in_the_context() -> None:
    torch.manual_seed(0)
    model = create_model("predrnnpp_tiny").eval()
    context = torch.rand(2, 4, 1, 16, 16)
    with torch.no_grad():
        own = model(context, 3, context_teacher_forcing=torch.zeros(3, dtype=torch.bool))
        torch.testing.assert_close(own, model(context[:, :1], 6)[:, 3:], **FLOAT32_REORDERED)


def test_a_few_training_steps_lower_the_loss() -> None:
    torch.manual_seed(0)
    model = create_model("predrnnpp_tiny").train()
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
    """OpenSTL's PredRNNpp_Model (3 layers) run in float64 with random weights (``python -m
    tests.models.openstl_golden /path/to/OpenSTL predrnnpp`` wrote the fixture): the same weights here give the
    same predictions of the context's frames and the same free-running forecast."""
    golden = torch.load(GOLDEN_PREDRNNPP, weights_only=True)
    model = model_from_openstl(golden["state_dict"], in_channels=2, default_horizon=AFT).eval()
    assert isinstance(model, PredRNNpp) and len(model.cells) == 3
    assert next(model.parameters()).dtype == torch.float64
    frames, expected = golden["frames"], golden["predictions"]  # predictions of frames 1 .. T - 1
    with torch.no_grad():
        torch.testing.assert_close(model(frames[:, :PRE]), expected[:, PRE - 1 :], **FLOAT64_REORDERED)
        one_step, _ = model.one_step(frames[:, :PRE])
    torch.testing.assert_close(one_step, expected[:, :PRE], **FLOAT64_REORDERED)


def test_the_importer_refuses_other_weights() -> None:
    golden = torch.load(GOLDEN_PREDRNNPP, weights_only=True)
    with pytest.raises(ValueError, match="expected OpenSTL PredRNN\\+\\+ weights"):
        predrnnpp_from_openstl({"conv_last.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="layer_norm"):
        predrnnpp_from_openstl({**golden["state_dict"], "cell_list.0.conv_x.1.weight": torch.zeros(4, 8, 8)})
    with pytest.raises(ValueError, match="expected the weights of OpenSTL's"):
        model_from_openstl({"weight": torch.zeros(1)})
    incomplete = {k: v for k, v in golden["state_dict"].items() if "highway.z_concat" not in k}
    with pytest.raises(ValueError, match=r"the weights do not fit PredRNNpp: missing \['highway.conv_z.0.weight'\]"):
        predrnnpp_from_openstl(incomplete, in_channels=2)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_layers must be an int >= 2"):
        PredRNNpp(num_layers=1)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        PredRNNpp(kernel_size=4)
    model = create_model("predrnnpp_tiny")
    _, (layers, m, z) = model.one_step(torch.rand(1, 1, 1, 16, 16))
    with pytest.raises(ValueError, match=r"state must hold \(h, c\) of 2 layers, got 1"):
        model.one_step(torch.rand(1, 1, 1, 16, 16), (layers[:1], m, z))
