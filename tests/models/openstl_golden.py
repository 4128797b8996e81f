"""Writes the golden fixtures under tests/models/golden/openstl_*.pt: OpenSTL's own models run once with random
weights.

python -m tests.models.openstl_golden /path/to/OpenSTL [predrnnv2 predrnnpp ...]   # a checkout of chengtan9907/OpenSTL

It runs OpenSTL's module and model files from that checkout (nothing of theirs is stored here: their files are
exec'd with their package imports stubbed), on 2 sequences of 3 + 3 frames of 2 channels in 2x2 patches with small
layers and 3x3 kernels, and stores the weights, the frames and OpenSTL's outputs.

- predrnnv2: PredRNNv2_Model (2 layers of 4, 16 x 16 frames, float32), twice: with the context true and the
  forecast free-running (evaluation), and with a random reverse-scheduled-sampling mask; also the decoupling term
  of the second run.
- the others, 8 x 8 frames in float64, free-running (:func:`_float64_run`): predrnnpp, PredRNNpp_Model with 3 layers
  of 4 (so that a layer above the highway reads the one below); mim, MIM_Model with 3 layers of 4 (an ST-LSTM and
  two MIM blocks, so that the upper MIM-N reads the lower one's output), on a fresh module (OpenSTL's MIM blocks keep
  MIM-S's memory from one call to the next); predrnn, PredRNN_Model with 3 layers of 4; convlstm, ConvLSTM_Model
  with layers of 4, 6 and 4 (widths that differ from layer to layer); e3dlstm, E3DLSTM_Model with 2 layers of 4
  (its (2, 5, 5) kernels and windows of 2 frames are fixed in OpenSTL's code), 5 steps, so that the recall reads up
  to 5 earlier cell states.
- simvp_gsta and tau: SimVP_Model with model_type gSTA or tau (3 frames of 8 x 8, hid_S 4, hid_T 8, N_S 2, N_T 3,
  MLP ratio 2), in float64 with random BatchNorm statistics, in evaluation; OpenSTL's timm imports stubbed (DropPath
  is the identity in evaluation).
"""

import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

FIXTURES = Path(__file__).parent / "golden"
GOLDEN = FIXTURES / "openstl_predrnnv2.pt"
GOLDEN_PREDRNNPP = FIXTURES / "openstl_predrnnpp.pt"
GOLDEN_MIM = FIXTURES / "openstl_mim.pt"
GOLDEN_SIMVP_GSTA = FIXTURES / "openstl_simvp_gsta.pt"
GOLDEN_TAU = FIXTURES / "openstl_tau.pt"
GOLDEN_PREDRNN = FIXTURES / "openstl_predrnn.pt"
GOLDEN_CONVLSTM = FIXTURES / "openstl_convlstm.pt"
GOLDEN_E3DLSTM = FIXTURES / "openstl_e3dlstm.pt"
#: The widths of the layers of the ConvLSTM fixture.
CONVLSTM_HIDDEN = [4, 6, 4]
PRE, AFT, CHANNELS, SIZE, PATCH, HIDDEN, LAYERS, KERNEL, BETA = 3, 3, 2, 16, 2, 4, 2, 3, 0.1
#: The frames' side in the fixtures after PredRNN-V2's, which run in float64 (see :func:`_float64_run`).
SMALL = 8
#: SimVP's and TAU's fixtures: hid_S and hid_T.
SIMVP_SPATIAL, SIMVP_TEMPORAL = 4, 8


def _openstl_class(checkout: Path, module_files: list[str], model_file: str, name: str) -> type[nn.Module]:
    """OpenSTL's model class ``name`` from ``openstl/models/{model_file}.py``, with ``openstl.modules`` standing for
    the classes of the given module files (exec'd in that order, as modules of that package)."""
    modules = types.ModuleType("openstl.modules")
    sys.modules.setdefault("openstl", types.ModuleType("openstl"))
    sys.modules["openstl.modules"] = modules
    for module_file in module_files:
        namespace: dict[str, Any] = {"__name__": f"openstl.modules.{module_file}", "__package__": "openstl.modules"}
        exec((checkout / f"openstl/modules/{module_file}.py").read_text(), namespace)
        for key, value in namespace.items():
            if callable(value):  # classes, and functions such as UniformerSubBlock
                setattr(modules, key, value)
    namespace = {"__name__": f"openstl.models.{model_file}"}
    exec((checkout / f"openstl/models/{model_file}.py").read_text(), namespace)
    model: type[nn.Module] = namespace[name]
    return model


class _Unused(nn.Module):
    """Stands for the classes OpenSTL's simvp_modules.py imports but gSTA and TAU do not use."""


class _DropPath(nn.Module):
    """timm's DropPath as these fixtures run it: in evaluation, the identity."""

    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()

    def forward(self, x: Tensor) -> Tensor:
        assert not self.training
        return x


def _stub_simvp_imports(checkout: Path) -> None:
    """What OpenSTL's simvp_modules.py imports from timm and from its own layers package, for gSTA and TAU: timm's
    DropPath and trunc_normal_, and MixMlp (OpenSTL's layers/van.py, exec'd); the rest unused."""

    def stub(name: str, **attributes: Any) -> None:
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        sys.modules[name] = module

    stub("timm")
    stub("timm.layers", DropPath=_DropPath, trunc_normal_=nn.init.trunc_normal_)
    stub("timm.models")
    stub("timm.models.convnext", ConvNeXtBlock=_Unused)
    stub("timm.models.mlp_mixer", MixerBlock=_Unused)
    stub("timm.models.swin_transformer", SwinTransformerBlock=_Unused, window_partition=None, window_reverse=None)
    stub("timm.models.vision_transformer", Block=_Unused)
    van: dict[str, Any] = {"__name__": "openstl.modules.layers.van"}
    exec((checkout / "openstl/modules/layers/van.py").read_text(), van)
    unused = "HorBlock ChannelAggregationFFN MultiOrderGatedAggregation PoolFormerBlock CBlock SABlock VANBlock"
    stub("openstl.modules.layers", MixMlp=van["MixMlp"], **dict.fromkeys(unused.split(), _Unused))


def _config(reverse: int = 0, size: int = SIZE) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        in_shape=(PRE + AFT, CHANNELS, size, size),
        patch_size=PATCH,
        filter_size=KERNEL,
        stride=1,
        layer_norm=0,
        pre_seq_length=PRE,
        aft_seq_length=AFT,
        total_length=PRE + AFT,
        reverse_scheduled_sampling=reverse,
        decouple_beta=BETA,
    )


def _patches(frames: Tensor) -> Tensor:
    """(B, T, C, H, W) -> OpenSTL's (B, T, H / p, W / p, p p C), as its reshape_patch does."""
    b, t, c, h, w = frames.shape
    x = frames.permute(0, 1, 3, 4, 2).reshape(b, t, h // PATCH, PATCH, w // PATCH, PATCH, c)
    return x.transpose(3, 4).reshape(b, t, h // PATCH, w // PATCH, PATCH * PATCH * c)


def _frames(patches: Tensor) -> Tensor:
    """The inverse of :func:`_patches`."""
    b, t, h, w, _ = patches.shape
    x = patches.reshape(b, t, h, w, PATCH, PATCH, CHANNELS).transpose(3, 4)
    return x.reshape(b, t, h * PATCH, w * PATCH, CHANNELS).permute(0, 1, 4, 2, 3)


def _flags(mask: Tensor, size: int = SIZE, dtype: torch.dtype = torch.float32) -> Tensor:
    """(B, S) bool -> OpenSTL's real_input_flag (B, S, H / p, W / p, p p C) of ones and zeros."""
    shape = (*mask.shape, size // PATCH, size // PATCH, PATCH * PATCH * CHANNELS)
    return mask.to(dtype)[..., None, None, None].expand(shape).contiguous()


def _redraw_float64(model: nn.Module) -> nn.Module:
    """``model`` in float64 and evaluation mode with every weight uniform in +-3 / sqrt(fan-in) (three times
    PyTorch's default bound for convolutions: outputs of order 0.1 to 1, where every term shows; OpenSTL starts some
    weights at zero or +-0.001) and random BatchNorm statistics.

    float64, so that the comparison is free of float32 rounding, which a stack of gates run over several steps
    amplifies (the patch order differs, so the sums of the bottom and output convolutions run in another order).
    """
    model = model.double().eval()
    for parameter in model.parameters():
        fan_in = parameter[0].numel() if parameter.ndim > 1 else 1
        nn.init.uniform_(parameter, -3 / fan_in**0.5, 3 / fan_in**0.5)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.running_mean, -0.5, 0.5)
            nn.init.uniform_(module.running_var, 0.5, 1.5)
    return model


def _float64_run(model: nn.Module) -> dict[str, Tensor]:
    """Re-draws a recurrent model's weights (:func:`_redraw_float64`) and runs it free (predictions fed back after
    the context) on random frames: the fixture of its weights, the frames and its predictions
    (B, PRE + AFT - 1, C, H, W) of frames 1 .. T - 1."""
    model = _redraw_float64(model)
    frames = torch.rand(2, PRE + AFT, CHANNELS, SMALL, SMALL, dtype=torch.float64)
    free = _flags(torch.zeros(2, AFT - 1, dtype=torch.bool), SMALL, torch.float64)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # for the zero states OpenSTL makes with torch.zeros
    try:
        with torch.no_grad():
            predictions, _ = model(_patches(frames), free, return_loss=False)
    finally:
        torch.set_default_dtype(default)
    return {"state_dict": model.state_dict(), "frames": frames, "predictions": _frames(predictions).contiguous()}


def write_predrnnv2(checkout: Path) -> Path:
    torch.manual_seed(0)
    model_class = _openstl_class(checkout, ["predrnnv2_modules"], "predrnnv2_model", "PredRNNv2_Model")
    evaluation = model_class(LAYERS, [HIDDEN] * LAYERS, _config(0)).eval()
    reverse = model_class(LAYERS, [HIDDEN] * LAYERS, _config(1)).eval()
    reverse.load_state_dict(evaluation.state_dict())
    frames = torch.rand(2, PRE + AFT, CHANNELS, SIZE, SIZE)
    # Reverse scheduled sampling: one flag per step after the first (context, then forecast).
    mask = torch.tensor([[True, False, False, True], [False, True, True, False]])
    with torch.no_grad():
        plain, _ = evaluation(_patches(frames), _flags(torch.zeros(2, AFT - 1, dtype=torch.bool)), return_loss=False)
        sampled, loss = reverse(_patches(frames), _flags(mask))
    sampled_frames = _frames(sampled)
    mse = (sampled_frames - frames[:, 1:]).square().mean()
    fixture = {
        "state_dict": evaluation.state_dict(),
        "frames": frames,
        "mask": mask,
        "forecast": _frames(plain)[:, -AFT:].contiguous(),
        "sampled_forecast": sampled_frames[:, -AFT:].contiguous(),
        "decoupling": (loss - mse) / BETA,
    }
    torch.save(fixture, GOLDEN)
    return GOLDEN


def write_predrnnpp(checkout: Path) -> Path:
    torch.manual_seed(0)
    model_class = _openstl_class(checkout, ["predrnnpp_modules"], "predrnnpp_model", "PredRNNpp_Model")
    torch.save(_float64_run(model_class(3, [HIDDEN] * 3, _config(size=SMALL))), GOLDEN_PREDRNNPP)
    return GOLDEN_PREDRNNPP


def write_mim(checkout: Path) -> Path:
    torch.manual_seed(0)
    model_class = _openstl_class(checkout, ["predrnn_modules", "mim_modules"], "mim_model", "MIM_Model")
    torch.save(_float64_run(model_class(3, [HIDDEN] * 3, _config(size=SMALL))), GOLDEN_MIM)
    return GOLDEN_MIM


def write_predrnn(checkout: Path) -> Path:
    torch.manual_seed(0)
    model_class = _openstl_class(checkout, ["predrnn_modules"], "predrnn_model", "PredRNN_Model")
    torch.save(_float64_run(model_class(3, [HIDDEN] * 3, _config(size=SMALL))), GOLDEN_PREDRNN)
    return GOLDEN_PREDRNN


def write_convlstm(checkout: Path) -> Path:
    torch.manual_seed(0)
    model_class = _openstl_class(checkout, ["convlstm_modules"], "convlstm_model", "ConvLSTM_Model")
    model = model_class(len(CONVLSTM_HIDDEN), CONVLSTM_HIDDEN, _config(size=SMALL))
    torch.save(_float64_run(model), GOLDEN_CONVLSTM)
    return GOLDEN_CONVLSTM


def write_e3dlstm(checkout: Path) -> Path:
    torch.manual_seed(0)
    model_class = _openstl_class(checkout, ["e3dlstm_modules"], "e3dlstm_model", "E3DLSTM_Model")
    torch.save(_float64_run(model_class(2, [HIDDEN] * 2, _config(size=SMALL))), GOLDEN_E3DLSTM)
    return GOLDEN_E3DLSTM


def _write_simvp(checkout: Path, model_type: str, path: Path) -> Path:
    torch.manual_seed(0)
    _stub_simvp_imports(checkout)
    model_class = _openstl_class(checkout, ["simvp_modules"], "simvp_model", "SimVP_Model")
    model = model_class(
        in_shape=(PRE, CHANNELS, SMALL, SMALL),
        hid_S=SIMVP_SPATIAL,
        hid_T=SIMVP_TEMPORAL,
        N_S=2,
        N_T=3,
        model_type=model_type,
        mlp_ratio=2.0,
    )
    model = _redraw_float64(model)
    frames = torch.rand(2, PRE, CHANNELS, SMALL, SMALL, dtype=torch.float64)
    with torch.no_grad():
        predictions = model(frames)
    torch.save({"state_dict": model.state_dict(), "frames": frames, "predictions": predictions}, path)
    return path


def write_simvp_gsta(checkout: Path) -> Path:
    return _write_simvp(checkout, "gSTA", GOLDEN_SIMVP_GSTA)


def write_tau(checkout: Path) -> Path:
    return _write_simvp(checkout, "tau", GOLDEN_TAU)


WRITERS: dict[str, Callable[[Path], Path]] = {
    "predrnnv2": write_predrnnv2,
    "predrnnpp": write_predrnnpp,
    "mim": write_mim,
    "simvp_gsta": write_simvp_gsta,
    "tau": write_tau,
    "predrnn": write_predrnn,
    "convlstm": write_convlstm,
    "e3dlstm": write_e3dlstm,
}


def main(checkout: Path, names: list[str]) -> None:
    for name in names or list(WRITERS):
        path = WRITERS[name](checkout)
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
