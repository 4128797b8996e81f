"""OpenSTL's ConvLSTM-S as ``openstl_convlstm_s``: its parameters and FLOPs against OpenSTL's model, the convolution
count against what runs, and OpenSTL's own outputs reproduced from its weights."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from convlstm.interop import convlstm_s_from_openstl, model_from_openstl
from convlstm.models import NextFramePredictor, create_model
from tests.models.openstl_golden import AFT, CONVLSTM_HIDDEN, GOLDEN_CONVLSTM, GOLDEN_PREDRNN, PRE
from tests.tolerances import FLOAT64_REORDERED

# Measured by building OpenSTL's own ConvLSTM_Model (openstl/models/convlstm_model.py with
# openstl/modules/convlstm_modules.py at chengtan9907/OpenSTL HEAD, exec'd in a scratch script) with
# configs/mmnist/ConvLSTM.py (num_hidden 128,128,128,128, filter_size 5, patch_size 4, stride 1, layer_norm 0,
# in_shape (10, 1, 64, 64)): p.numel() summed over its parameters, and fvcore's FlopCountAnalysis of its forward on
# the input OpenSTL's exp.py gives it (1 x 20 frames, 9 flags): convolutions only. OpenSTL's table: 15.0M and 56.8G.
OPENSTL_PARAMETERS = 15_083_520
OPENSTL_FVCORE_FLOPS = 56_790_351_872
# Each of its 4 cells also holds a conv_o (2F -> F, 5x5) and a 1x1 conv_last (2F -> F) that its forward never calls.
OPENSTL_UNUSED = 4 * (2 * 128 * 128 * 25 + 2 * 128 * 128)
# Ours has gate biases (4F per layer) and a bias on the output convolution (16 patch channels); OpenSTL has none.
OUR_BIASES = 4 * 4 * 128 + 16


def test_parameters_are_openstls_used_ones_plus_biases() -> None:
    with torch.device("meta"):
        model = create_model("openstl_convlstm_s")
    assert sum(p.numel() for p in model.parameters()) == OPENSTL_PARAMETERS - OPENSTL_UNUSED + OUR_BIASES


def test_convolution_cost_is_fvcores_count_less_the_first_steps_zero_state() -> None:
    """OpenSTL's cells convolve the zero state at the first step; this model skips those convolutions."""
    model = create_model("openstl_convlstm_s")
    skipped = 4 * (128 * 4 * 128 * 5 * 5) * 16 * 16  # per layer: h (F) to 4F gates, 5x5, on the 16x16 patch grid
    assert model.conv_flops(64, 64, steps=19) + skipped == OPENSTL_FVCORE_FLOPS


@pytest.mark.parametrize(
    "overrides",
    [
        {"hidden_channels": (4, 6)},
        {"encoder_channels": (4, 6), "hidden_channels": (8,), "patch_size": 2, "kernel_size": 3},
    ],
)
def test_convolution_cost_counts_what_runs(overrides: dict[str, object]) -> None:
    """conv_flops against torch's count of the convolutions actually run (2 FLOPs per multiply-add)."""
    model = create_model("openstl_convlstm_s", **overrides).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.rand(1, 3, 1, 32, 32), 3)
    assert model.conv_flops(32, 32, steps=5) == counter.get_total_flops() // 2


def test_openstl_weights_reproduce_openstl_outputs() -> None:
    """OpenSTL's ConvLSTM_Model (layers of 4, 6 and 4, 2x2 patches of 8x8 frames of 2 channels) run once in float64
    with random weights (``python -m tests.models.openstl_golden /path/to/OpenSTL convlstm`` wrote the fixture): the
    same weights here give the same predictions of the context's frames and the same free-running forecast."""
    golden = torch.load(GOLDEN_CONVLSTM, weights_only=True)
    model = model_from_openstl(golden["state_dict"], in_channels=2, default_horizon=AFT).eval()
    assert isinstance(model, NextFramePredictor)
    config = model.config
    assert (config.hidden_channels, config.patch_size, config.encoder_channels) == (tuple(CONVLSTM_HIDDEN), 2, ())
    assert config.output_activation == "linear" and config.recurrent_kernel_size == 3
    frames, expected = golden["frames"], golden["predictions"]  # predictions of frames 1 .. T - 1
    with torch.no_grad():
        torch.testing.assert_close(model(frames[:, :PRE]), expected[:, PRE - 1 :], **FLOAT64_REORDERED)
        one_step, _ = model.one_step(frames[:, :PRE])
    torch.testing.assert_close(one_step, expected[:, :PRE], **FLOAT64_REORDERED)


def test_the_importer_refuses_other_weights() -> None:
    with pytest.raises(ValueError, match="expected OpenSTL ConvLSTM weights"):
        convlstm_s_from_openstl({"conv_last.weight": torch.zeros(1)})
    predrnn = torch.load(GOLDEN_PREDRNN, weights_only=True)["state_dict"]
    with pytest.raises(ValueError, match="conv_x to 4 gates, no conv_m"):
        convlstm_s_from_openstl(predrnn, in_channels=2)
    golden = torch.load(GOLDEN_CONVLSTM, weights_only=True)["state_dict"]
    normed = {**golden, "cell_list.0.conv_x.1.weight": torch.ones(16, 4, 4)}
    with pytest.raises(ValueError, match="use OpenSTL's layer_norm"):
        convlstm_s_from_openstl(normed, in_channels=2)
    with pytest.raises(ValueError, match="not in_channels=3 times a square patch"):
        convlstm_s_from_openstl(golden, in_channels=3)
