"""OpenSTL's PredRNN and PredRNN-V2 weights as [`PredRNN`][convlstm.models.PredRNN] /
[`PredRNNv2`][convlstm.models.PredRNNv2].

OpenSTL's modules hold the same convolutions under other names (``cell_list.{l}`` for ``cells.{l}``) and cut frames
into patches in another channel order: (row, column, channel) within a patch where
`space_to_depth` has (channel, row, column). The two orders agree for one channel;
for more, the bottom layer's input convolution and the output convolution are permuted to match.
"""

import os
from collections.abc import Mapping

import torch
from torch import Tensor

from convlstm.models.predrnn import PredRNN, PredRNNv2

__all__ = ["openstl_patch_order", "predrnn_from_openstl"]


def openstl_patch_order(channels: int, patch_size: int) -> Tensor:
    """The index, in OpenSTL's patch layout, of each of our patch channels: ours[k] = theirs[order[k]].

    Ours (pixel_unshuffle) is c p^2 + i p + j for channel c at row i, column j of the patch; OpenSTL's
    (reshape_patch) is (i p + j) C + c.
    """
    c, i, j = torch.meshgrid(torch.arange(channels), torch.arange(patch_size), torch.arange(patch_size), indexing="ij")
    return ((i * patch_size + j) * channels + c).flatten()


def predrnn_from_openstl(
    source: str | os.PathLike[str] | Mapping[str, Tensor],
    *,
    in_channels: int = 1,
    default_horizon: int = 10,
) -> PredRNN:
    """A PredRNN (or PredRNNv2, when the weights have OpenSTL's ``adapter``) holding OpenSTL's weights.

    Args:
        source: a state dict of OpenSTL's PredRNN_Model / PredRNNv2_Model, or a file holding one (also a Lightning
            checkpoint's ``state_dict``, whose keys start with ``model.``); files load with ``weights_only=True``.
        in_channels: channels C of the frames (the weights only give C p^2).
        default_horizon: the model's default horizon.

    Raises:
        ValueError: the weights are not a PredRNN's, or use OpenSTL's layer norm (whose affine parameters are per
            pixel: ours are per channel, so they cannot be carried over).
    """
    state = _state_dict(source)
    layers = 0
    while f"cell_list.{layers}.conv_x.0.weight" in state:
        layers += 1
    if layers == 0 or "conv_last.weight" not in state:
        found = sorted(state)[:6]
        raise ValueError(f"expected OpenSTL PredRNN weights (cell_list.0.conv_x.0.weight, ...), got {found}")
    if any(".conv_x.1." in key for key in state):
        raise ValueError(
            "these weights use OpenSTL's layer_norm, whose per-pixel affine parameters have no per-channel "
            "equivalent; only weights trained with layer_norm=0 convert"
        )
    first = state["cell_list.0.conv_x.0.weight"]  # (7F, C p^2, k, k)
    hidden, patched, kernel = first.shape[0] // 7, first.shape[1], first.shape[-1]
    patch_size = round((patched / in_channels) ** 0.5)
    if in_channels * patch_size**2 != patched:
        raise ValueError(
            f"the bottom layer reads {patched} channels, which is not in_channels={in_channels} times a square "
            "patch; give the frames' in_channels"
        )
    model_class = PredRNNv2 if "adapter.weight" in state else PredRNN
    model = model_class(
        in_channels=in_channels,
        hidden_channels=hidden,
        num_layers=layers,
        kernel_size=kernel,
        patch_size=patch_size,
        default_horizon=default_horizon,
    )
    order = openstl_patch_order(in_channels, patch_size)
    ours: dict[str, Tensor] = {}
    for key, value in state.items():
        if not key.startswith(("cell_list.", "conv_last.", "adapter.")):
            continue  # e.g. buffers of OpenSTL's losses
        name = key.replace("cell_list.", "cells.", 1)
        if key == "cell_list.0.conv_x.0.weight":
            value = value[:, order]
        elif key == "conv_last.weight":
            value = value[order]
        ours[name] = value
    missing, unexpected = model.load_state_dict(ours, strict=False)
    if missing or unexpected:
        raise ValueError(f"the weights do not fit {model_class.__name__}: missing {missing}, unexpected {unexpected}")
    return model


def _state_dict(source: str | os.PathLike[str] | Mapping[str, Tensor]) -> dict[str, Tensor]:
    loaded = source if isinstance(source, Mapping) else torch.load(source, map_location="cpu", weights_only=True)
    if not isinstance(loaded, Mapping):
        raise ValueError(f"expected a state dict, got {type(loaded).__name__}")
    if "state_dict" in loaded and isinstance(loaded["state_dict"], Mapping):
        loaded = loaded["state_dict"]
    return {key.removeprefix("model."): value for key, value in loaded.items() if isinstance(value, Tensor)}
