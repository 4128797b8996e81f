"""The check every layer and model makes of the tensors it is given, with one wording."""

import torch
from torch import Tensor


def check_like_parameters(x: Tensor, parameter: Tensor, *, name: str, owner: str) -> None:
    """Raises ValueError unless ``x`` is floating point, of ``parameter``'s dtype and on its device.

    Under autocast the dtypes may differ (the convolutions cast them); the device must still match. ``owner``
    names what holds the parameters in the message ("cell", "model").
    """
    if x.device != parameter.device:
        raise ValueError(f"{name} is on {x.device} but the {owner}'s parameters are on {parameter.device}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor like the {owner}'s parameters, got dtype {x.dtype}")
    if x.dtype != parameter.dtype and not torch.is_autocast_enabled(x.device.type):
        raise ValueError(
            f"{name} has dtype {x.dtype} but the {owner}'s parameters are {parameter.dtype}: convert one to the "
            f"other ({name}.to({parameter.dtype}) or {owner}.to({x.dtype}))"
        )
