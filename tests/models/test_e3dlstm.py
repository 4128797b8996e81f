"""E3D-LSTM: OpenSTL's size and cost, the forecast interface, the window and the recall's memories, OpenSTL's wiring
against the paper's, learning, and OpenSTL's own outputs reproduced from its weights."""

import pytest
import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from convlstm.interop import e3dlstm_from_openstl, model_from_openstl
from convlstm.layers import Eidetic3DLSTMCell
from convlstm.models import E3DLSTM, create_model
from tests.models.openstl_golden import AFT, GOLDEN_E3DLSTM, PRE
from tests.tolerances import FLOAT32_REORDERED, FLOAT64_REORDERED

# Measured by building OpenSTL's own E3DLSTM_Model (openstl/models/e3dlstm_model.py with
# openstl/modules/e3dlstm_modules.py at chengtan9907/OpenSTL HEAD, exec'd in a scratch script) with
# configs/mmnist/E3DLSTM.py (num_hidden 128,128,128,128, patch_size 4, stride 1, layer_norm 0, in_shape
# (10, 1, 64, 64)): p.numel() summed over its parameters, and fvcore's FlopCountAnalysis of its forward on the input
# OpenSTL's exp.py gives it (1 x 20 frames, 9 flags), by operator. OpenSTL's table: 51.0M and 298.9G.
OPENSTL_PARAMETERS = 51_347_456
OPENSTL_FVCORE = {"conv": 247_841_423_360, "einsum": 51_005_640_000, "layer_norm": 24_903_680}


def test_parameter_count_is_openstls() -> None:
    with torch.device("meta"):
        model = create_model("e3dlstm_mmnist")
    assert sum(p.numel() for p in model.parameters()) == OPENSTL_PARAMETERS


def test_flops_equal_fvcores_count_of_openstls_model() -> None:
    """The convolutions and the norm exactly; the recall's two products as multiply-adds, which fvcore rounds to 4
    significant digits per product (numpy's printed estimate)."""
    with torch.device("meta"):
        model = create_model("e3dlstm_mmnist")
    flops, conv = model.flops(64, 64, steps=19), model.conv_flops(64, 64, steps=19)
    assert conv == OPENSTL_FVCORE["conv"]
    recall = flops - conv - OPENSTL_FVCORE["layer_norm"]
    assert recall == pytest.approx(OPENSTL_FVCORE["einsum"], rel=1e-4)
    assert flops == pytest.approx(sum(OPENSTL_FVCORE.values()), rel=1e-5)
    assert flops == pytest.approx(298.9e9, rel=2e-4)  # OpenSTL's table


@pytest.mark.parametrize("recall_window", [None, 2])
def test_flops_count_what_runs(recall_window: int | None) -> None:
    """flops against torch's count of the convolutions actually run (2 FLOPs per multiply-add), the recall's two
    products on the memories each cell is given and the cell norms at 5 per element (hooks)."""
    model = create_model("e3dlstm_tiny", num_layers=3, recall_window=recall_window).eval()
    counted = [0]

    def norm(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        counted[0] += 5 * inputs[0].numel()

    def recall(module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        history = inputs[2]  # (B, N, F, τ, H, W)
        queries, channels = history[0, 0, 0].numel(), history.shape[2]
        counted[0] += 2 * history.shape[0] * queries * history.shape[1] * queries * channels

    for module in model.modules():
        if isinstance(module, nn.LayerNorm):
            module.register_forward_hook(norm)
        if isinstance(module, Eidetic3DLSTMCell):
            module.register_forward_pre_hook(recall)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.rand(1, 3, 1, 16, 16), 3)
    convolutions = counter.get_flop_counts()["Global"][torch.ops.aten.convolution]
    assert model.conv_flops(16, 16, steps=5) == convolutions // 2
    assert model.flops(16, 16, steps=5) == convolutions // 2 + counted[0]


def test_shapes_and_the_forecast_continues_the_frame_by_frame_predictions() -> None:
    torch.manual_seed(0)
    model = create_model("e3dlstm_tiny", in_channels=2).eval()
    context = torch.rand(2, 3, 2, 16, 16)
    with torch.no_grad():
        forecast = model(context, 4)
        assert forecast.shape == (2, 4, 2, 16, 16)
        predictions, state = model.one_step(context)
        torch.testing.assert_close(forecast[:, 0], predictions[:, -1], rtol=0, atol=0)
        following, _ = model.one_step(forecast[:, :1], state)
        torch.testing.assert_close(forecast[:, 1], following[:, 0], **FLOAT32_REORDERED)
    earlier, layers, m = state
    assert earlier.shape == (2, 1, 32, 4, 4)  # the window's earlier input: the last context frame, in patches
    torch.testing.assert_close(earlier[:, 0], nn.functional.pixel_unshuffle(context[:, -1], 4), rtol=0, atol=0)
    h, memories = layers[0]
    # The zero state and one cell state per step: the recall reads them all (OpenSTL's choice).
    assert h.shape == m.shape == (2, 8, 2, 4, 4) and memories.shape == (2, 4, 8, 2, 4, 4)
    assert not memories[:, 0].any()


def test_the_recall_window_keeps_the_latest_cell_states() -> None:
    torch.manual_seed(0)
    model = create_model("e3dlstm_tiny", recall_window=2).eval()
    everything = create_model("e3dlstm_tiny").eval()
    everything.load_state_dict(model.state_dict())
    frames = torch.rand(1, 5, 1, 16, 16)
    with torch.no_grad():
        windowed, (_, layers, _) = model.one_step(frames)
        full, (_, all_layers, _) = everything.one_step(frames)
    assert layers[0][1].shape[1] == 2 and all_layers[0][1].shape[1] == 6  # the zero state and 5 steps' c
    # The first two steps read the same states either way; from the third on the windowed recall reads fewer.
    torch.testing.assert_close(windowed[:, :2], full[:, :2], rtol=0, atol=0)
    assert not torch.allclose(windowed[:, 2:], full[:, 2:])


def test_openstls_wiring_keeps_the_spatiotemporal_memory_at_zero_and_the_papers_passes_it_on() -> None:
    torch.manual_seed(0)
    openstl = create_model("e3dlstm_tiny").eval()
    paper = create_model("e3dlstm_tiny", update_memory=True).eval()
    paper.load_state_dict(openstl.state_dict())
    frames = torch.rand(2, 3, 1, 16, 16)
    with torch.no_grad():
        first, (_, layers, m) = openstl.one_step(frames[:, :1])
        second, (_, paper_layers, m_paper) = paper.one_step(frames[:, :1])
    assert not m.any() and m_paper.abs().sum() > 0
    # At the first step the bottom layer reads zeros either way; the layer above reads the bottom's m' or zeros.
    torch.testing.assert_close(layers[0][0], paper_layers[0][0], rtol=0, atol=0)
    assert not torch.allclose(layers[1][0], paper_layers[1][0]) and not torch.allclose(first, second)


def test_every_weight_learns_when_the_memory_flows() -> None:
    """With OpenSTL's wiring the convolution of m multiplies zeros (no gradient); with the paper's it learns."""
    for update_memory in (False, True):
        model = create_model("e3dlstm_tiny", update_memory=update_memory).train()
        model(torch.rand(1, 3, 1, 16, 16), 2).square().sum().backward()
        idle = {name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0}
        # The bottom layer's conv_m reads the m its own step starts from: zeros at the first step, then the top's.
        assert idle == (set() if update_memory else {f"cells.{layer}.conv_m.0.weight" for layer in range(2)})


def test_the_frame_size_is_fixed_and_bad_arguments_raise() -> None:
    model = create_model("e3dlstm_tiny")
    with pytest.raises(ValueError, match=r"context must be 16x16 frames \(H x W: E3D-LSTM's layer norm is per pixel\)"):
        model(torch.rand(1, 2, 1, 32, 32))
    with pytest.raises(ValueError, match="height and width must be divisible by patch_size=4, got 18x16"):
        E3DLSTM(height=18, width=16)
    with pytest.raises(ValueError, match="recall_window must be an int >= 1, got 0"):
        E3DLSTM(recall_window=0)
    with pytest.raises(ValueError, match="temporal_kernel_size must be at most window_length=1, got 2"):
        E3DLSTM(window_length=1)
    _, (earlier, layers, m) = model.one_step(torch.rand(1, 1, 1, 16, 16))
    with pytest.raises(ValueError, match=r"state must hold \(h, memories\) of 2 layers, got 1"):
        model.one_step(torch.rand(1, 1, 1, 16, 16), (earlier, layers[:1], m))


def test_a_longer_window_reads_more_frames() -> None:
    torch.manual_seed(0)
    model = create_model("e3dlstm_tiny", window_length=3, temporal_kernel_size=2).eval()
    frames = torch.rand(1, 4, 1, 16, 16)
    with torch.no_grad():
        whole, (earlier, _, _) = model.one_step(frames)
        first, state = model.one_step(frames[:, :2])
        rest, _ = model.one_step(frames[:, 2:], state)
    assert earlier.shape == (1, 2, 16, 4, 4)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), whole, **FLOAT32_REORDERED)


def test_a_few_training_steps_lower_the_loss() -> None:
    torch.manual_seed(0)
    model = create_model("e3dlstm_tiny").train()
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
    """OpenSTL's E3DLSTM_Model (2 layers of 4, 2x2 patches of 8x8 frames of 2 channels) run once in float64 with
    random weights (``python -m tests.models.openstl_golden /path/to/OpenSTL e3dlstm`` wrote the fixture): the same
    weights here give the same predictions of the context's frames and the same free-running forecast."""
    golden = torch.load(GOLDEN_E3DLSTM, weights_only=True)
    model = model_from_openstl(golden["state_dict"], in_channels=2, default_horizon=AFT).eval()
    assert isinstance(model, E3DLSTM)
    config = model.config
    assert (config.num_layers, config.height, config.window_length, config.kernel_size) == (2, 8, 2, 5)
    frames, expected = golden["frames"], golden["predictions"]  # predictions of frames 1 .. T - 1
    with torch.no_grad():
        torch.testing.assert_close(model(frames[:, :PRE]), expected[:, PRE - 1 :], **FLOAT64_REORDERED)
        one_step, _ = model.one_step(frames[:, :PRE])
    torch.testing.assert_close(one_step, expected[:, :PRE], **FLOAT64_REORDERED)


def test_the_importer_refuses_other_weights() -> None:
    golden = torch.load(GOLDEN_E3DLSTM, weights_only=True)
    with pytest.raises(ValueError, match="expected OpenSTL E3D-LSTM weights"):
        e3dlstm_from_openstl({"conv_last.weight": torch.zeros(1)})
    without_norm = {k: v for k, v in golden["state_dict"].items() if "_norm_c_t" not in k}
    with pytest.raises(ValueError, match=r"with the cells' norm"):
        e3dlstm_from_openstl(without_norm, in_channels=2)
    state = dict(golden["state_dict"])
    del state["cell_list.1._norm_c_t.bias"]
    with pytest.raises(ValueError, match=r"missing \['cells.1.cell_norm.bias'\]"):
        e3dlstm_from_openstl(state, in_channels=2)
    with pytest.raises(ValueError, match="not in_channels=3 times a square patch"):
        e3dlstm_from_openstl(golden["state_dict"], in_channels=3)
