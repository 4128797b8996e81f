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
  MIM-S's memory from one call to the next).
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
PRE, AFT, CHANNELS, SIZE, PATCH, HIDDEN, LAYERS, KERNEL, BETA = 3, 3, 2, 16, 2, 4, 2, 3, 0.1
#: The frames' side in the fixtures after PredRNN-V2's, which run in float64 (see :func:`_float64_run`).
SMALL = 8


def _openstl_class(checkout: Path, module_files: list[str], model_file: str, name: str) -> type[nn.Module]:
    """OpenSTL's model class ``name`` from ``openstl/models/{model_file}.py``, with ``openstl.modules`` standing for
    the classes of the given module files (exec'd in that order)."""
    modules = types.ModuleType("openstl.modules")
    sys.modules.setdefault("openstl", types.ModuleType("openstl"))
    sys.modules["openstl.modules"] = modules
    for module_file in module_files:
        namespace: dict[str, Any] = {"__name__": f"openstl.modules.{module_file}"}
        exec((checkout / f"openstl/modules/{module_file}.py").read_text(), namespace)
        for key, value in namespace.items():
            if isinstance(value, type):
                setattr(modules, key, value)
    namespace = {"__name__": f"openstl.models.{model_file}"}
    exec((checkout / f"openstl/models/{model_file}.py").read_text(), namespace)
    model: type[nn.Module] = namespace[name]
    return model


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


def _float64_run(model: nn.Module) -> dict[str, Tensor]:
    """Re-draws ``model``'s weights in float64 and runs it free (predictions fed back after the context) on random
    frames: the fixture of its weights, the frames and its predictions (B, PRE + AFT - 1, C, H, W) of frames
    1 .. T - 1.

    float64, so that the comparison is free of float32 rounding, which a stack of gates run over several steps
    amplifies (the patch order differs, so the sums of the bottom and output convolutions run in another order).
    Every weight is uniform in +-3 / sqrt(fan-in), three times PyTorch's default bound for convolutions: outputs
    of order 0.1 to 1, where every term shows (OpenSTL starts some weights at zero or +-0.001).
    """
    model = model.double().eval()
    for parameter in model.parameters():
        fan_in = parameter[0].numel() if parameter.ndim > 1 else 1
        nn.init.uniform_(parameter, -3 / fan_in**0.5, 3 / fan_in**0.5)
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


WRITERS: dict[str, Callable[[Path], Path]] = {
    "predrnnv2": write_predrnnv2,
    "predrnnpp": write_predrnnpp,
    "mim": write_mim,
}


def main(checkout: Path, names: list[str]) -> None:
    for name in names or list(WRITERS):
        path = WRITERS[name](checkout)
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
