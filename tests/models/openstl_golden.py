"""Writes tests/models/golden/openstl_predrnnv2.pt: OpenSTL's PredRNN-V2 module run once with random weights.

python -m tests.models.openstl_golden /path/to/OpenSTL       # a checkout of chengtan9907/OpenSTL

It runs OpenSTL's own predrnnv2_modules.py and predrnnv2_model.py from that checkout (nothing of theirs is stored
here), on 2 sequences of 3 + 3 frames of 2 x 16 x 16 (2x2 patches, 2 layers of 4, 3x3 kernels), twice: with
the context true and the forecast free-running (evaluation), and with a random reverse-scheduled-sampling mask. It
stores the weights, the frames, the masks, both outputs and the decoupling term of the second run.
"""

import sys
import types
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

GOLDEN = Path(__file__).parent / "golden" / "openstl_predrnnv2.pt"
PRE, AFT, CHANNELS, SIZE, PATCH, HIDDEN, LAYERS, KERNEL, BETA = 3, 3, 2, 16, 2, 4, 2, 3, 0.1


def _openstl_model(checkout: Path) -> type[nn.Module]:
    """OpenSTL's PredRNNv2_Model, its module file exec'd with its own imports stubbed to each other."""
    modules = types.ModuleType("openstl.modules")
    sys.modules.setdefault("openstl", types.ModuleType("openstl"))
    sys.modules["openstl.modules"] = modules
    namespace: dict[str, Any] = {}
    exec((checkout / "openstl/modules/predrnnv2_modules.py").read_text(), namespace)
    modules.SpatioTemporalLSTMCellv2 = namespace["SpatioTemporalLSTMCellv2"]  # type: ignore[attr-defined]
    namespace = {}
    exec((checkout / "openstl/models/predrnnv2_model.py").read_text(), namespace)
    model: type[nn.Module] = namespace["PredRNNv2_Model"]
    return model


def _config(reverse: int) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        in_shape=(PRE + AFT, CHANNELS, SIZE, SIZE),
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


def _flags(mask: Tensor) -> Tensor:
    """(B, S) bool -> OpenSTL's real_input_flag (B, S, H / p, W / p, p p C) of ones and zeros."""
    shape = (*mask.shape, SIZE // PATCH, SIZE // PATCH, PATCH * PATCH * CHANNELS)
    return mask.float()[..., None, None, None].expand(shape).contiguous()


def main(checkout: Path) -> None:
    torch.manual_seed(0)
    model_class = _openstl_model(checkout)
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
    torch.save(
        {
            "state_dict": evaluation.state_dict(),
            "frames": frames,
            "mask": mask,
            "forecast": _frames(plain)[:, -AFT:].contiguous(),
            "sampled_forecast": sampled_frames[:, -AFT:].contiguous(),
            "decoupling": (loss - mse) / BETA,
        },
        GOLDEN,
    )
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size} bytes)")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
