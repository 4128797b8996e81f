"""SimVP (gSTA) and TAU: OpenSTL's sizes and fvcore's FLOPs, horizons shorter and longer than the context, learning,
and OpenSTL's own outputs reproduced from its weights."""

import pytest
import torch
from torch import Tensor, nn

from convlstm.interop import model_from_openstl, simvp_from_openstl
from convlstm.models import SimVP, create_model
from tests.models.openstl_golden import GOLDEN_SIMVP_GSTA, GOLDEN_TAU
from tests.tolerances import FLOAT64_REORDERED

# Measured by building OpenSTL's own SimVP_Model (openstl/models/simvp_model.py, openstl/modules/simvp_modules.py and
# layers/van.py at chengtan9907/OpenSTL HEAD, exec'd in a scratch script with timm's imports stubbed) with
# configs/mmnist/simvp/SimVP_gSTA.py and configs/mmnist/TAU.py (hid_S 64, hid_T 512, N_S 4, N_T 8, 3x3 kernels,
# in_shape (10, 1, 64, 64)): p.numel() summed over its parameters, and fvcore's FlopCountAnalysis of its forward in
# evaluation on the input OpenSTL's exp.py gives it (1 x 10 frames). OpenSTL's table: 46.8M / 16.5G, 44.7M / 16.0G.
OPENSTL = {
    "simvp_gsta_mmnist": (46_769_665, 16_526_049_280),
    "tau_mmnist": (44_656_001, 15_952_646_144),
}


@pytest.mark.parametrize("name", sorted(OPENSTL))
def test_parameters_and_flops_equal_openstls(name: str) -> None:
    with torch.device("meta"):
        model = create_model(name)
    parameters, flops = OPENSTL[name]
    assert sum(p.numel() for p in model.parameters()) == parameters
    assert model.flops(64, 64) == flops


@pytest.mark.parametrize("name", ["simvp_gsta_tiny", "tau_tiny"])
def test_flops_count_what_runs(name: str) -> None:
    """flops against fvcore's rules applied to every module actually run (forward hooks, evaluation mode)."""
    model = create_model(name).eval()
    counted = [0]

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        x = inputs[0]
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            counted[0] += output.numel() * per_output
        elif isinstance(module, nn.Linear):
            counted[0] += output.numel() * module.in_features
        elif isinstance(module, nn.GroupNorm):
            counted[0] += 5 * x.numel()
        elif isinstance(module, nn.BatchNorm2d):
            counted[0] += 2 * x.numel()

    for module in model.modules():
        module.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.rand(1, 3, 1, 16, 16), 3)
    if model.config.translator == "tau":  # the average pooling (a mean, not a module): 1 per element
        pixels = (16 // model.scale) ** 2
        counted[0] += sum(b[0].norm1.num_features for b in model.translator) * pixels  # type: ignore[index]
    assert model.flops(16, 16) == counted[0]


def test_horizons_shorter_and_longer_than_the_context() -> None:
    torch.manual_seed(0)
    model = create_model("tau_tiny", in_channels=2).eval()
    context, targets = torch.rand(2, 3, 2, 16, 16), torch.rand(2, 7, 2, 16, 16)
    with torch.no_grad():
        one_pass = model.translate(context)
        torch.testing.assert_close(model(context, 2), one_pass[:, :2], rtol=0, atol=0)
        # Longer: passes on the model's own last frames ...
        seven = model(context, 7)
        assert seven.shape == (2, 7, 2, 16, 16)
        second = model.translate(one_pass)
        torch.testing.assert_close(seven[:, :6], torch.cat([one_pass, second], dim=1), rtol=0, atol=0)
        torch.testing.assert_close(seven[:, 6], model.translate(second)[:, 0], rtol=0, atol=0)
        # ... or on the true frames where teacher forcing says so.
        forced = model(context, 7, targets, torch.tensor([True, False, True, False, False, False, False]))
        fed = torch.stack([targets[:, 0], one_pass[:, 1], targets[:, 2]], dim=1)
        torch.testing.assert_close(forced[:, 3:6], model.translate(fed), rtol=0, atol=0)


def test_the_context_length_and_frame_size_are_checked() -> None:
    model = create_model("simvp_gsta_tiny")
    with pytest.raises(ValueError, match=r"context must have context_frames=3 frames \(SimVP stacks them"):
        model(torch.rand(1, 4, 1, 16, 16))
    with pytest.raises(ValueError, match="context must have H and W divisible by 2, got 15x16"):
        model(torch.rand(1, 3, 1, 15, 16))
    with pytest.raises(ValueError, match="spatial_layers must be even"):
        SimVP(spatial_layers=3)
    with pytest.raises(ValueError, match="translator must be one of"):
        SimVP(translator="incepu")


def test_stochastic_depth_follows_openstls_schedule() -> None:
    with torch.device("meta"):
        model = create_model("simvp_gsta_mmnist")
    rates = [stage[0].drop_path for stage in model.translator]  # type: ignore[index]
    assert rates == pytest.approx(torch.linspace(0.01, 0.0, 8).tolist())


def test_a_few_training_steps_lower_the_loss() -> None:
    torch.manual_seed(0)
    model = create_model("simvp_gsta_tiny").train()
    frame = torch.rand(4, 1, 1, 16, 16)
    context, target = frame.expand(4, 3, 1, 16, 16), frame.expand(4, 3, 1, 16, 16)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = (model(context, 3) - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize(("fixture", "translator"), [(GOLDEN_SIMVP_GSTA, "gsta"), (GOLDEN_TAU, "tau")])
def test_openstl_weights_reproduce_openstl_outputs(fixture: object, translator: str) -> None:
    """OpenSTL's SimVP_Model (gSTA or tau; 2 encoder stages, 3 translator blocks) run in float64 in evaluation with
    random weights and BatchNorm statistics (``python -m tests.models.openstl_golden /path/to/OpenSTL simvp_gsta
    tau`` wrote the fixtures): the same weights here give the same frames."""
    golden = torch.load(fixture, weights_only=True)  # type: ignore[call-overload]
    model = model_from_openstl(golden["state_dict"]).eval()
    assert isinstance(model, SimVP) and model.config.translator == translator
    assert (model.config.context_frames, model.config.in_channels, model.default_horizon) == (3, 2, 3)
    with torch.no_grad():
        torch.testing.assert_close(model(golden["frames"]), golden["predictions"], **FLOAT64_REORDERED)


def test_the_importer_refuses_other_weights() -> None:
    golden = torch.load(GOLDEN_TAU, weights_only=True)
    with pytest.raises(ValueError, match="expected OpenSTL SimVP weights"):
        simvp_from_openstl({"weight": torch.zeros(1)})
    incep = {k: v for k, v in golden["state_dict"].items() if ".attn.proj_1." not in k}
    with pytest.raises(ValueError, match="another translator than gSTA or TAU"):
        simvp_from_openstl(incep)
