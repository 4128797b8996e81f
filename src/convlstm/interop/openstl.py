"""OpenSTL's weights (Tan et al. 2023, chengtan9907/OpenSTL) as this library's models: ConvLSTM-S
([`NextFramePredictor`][convlstm.models.NextFramePredictor], registered as ``openstl_convlstm_s``), PredRNN and
PredRNN-V2 ([`PredRNN`][convlstm.models.PredRNN], [`PredRNNv2`][convlstm.models.PredRNNv2]), PredRNN++
([`PredRNNpp`][convlstm.models.PredRNNpp]), MIM ([`MIM`][convlstm.models.MIM]), E3D-LSTM
([`E3DLSTM`][convlstm.models.E3DLSTM]), and SimVP with gSTA or TAU ([`SimVP`][convlstm.models.SimVP]).

OpenSTL's modules hold the same convolutions under other names (``cell_list.{l}`` for ``cells.{l}``) and cut frames
into patches in another channel order: (row, column, channel) within a patch where
`space_to_depth` has (channel, row, column). The two orders agree for one channel;
for more, the bottom layer's input convolution and the output convolution are permuted to match.
[`model_from_openstl`][convlstm.interop.model_from_openstl] tells the models apart by their weights' names.
"""

import os
import re
from collections.abc import Mapping
from typing import TypeVar

import torch
from torch import Tensor, nn

from convlstm.models.e3dlstm import E3DLSTM
from convlstm.models.mim import MIM
from convlstm.models.next_frame import NextFramePredictor
from convlstm.models.predrnn import PredRNN, PredRNNv2
from convlstm.models.predrnnpp import PredRNNpp
from convlstm.models.registry import create_model
from convlstm.models.simvp import SimVP

__all__ = [
    "convlstm_s_from_openstl",
    "e3dlstm_from_openstl",
    "mim_from_openstl",
    "model_from_openstl",
    "openstl_patch_order",
    "predrnn_from_openstl",
    "predrnnpp_from_openstl",
    "simvp_from_openstl",
]

M = TypeVar("M", bound=nn.Module)

StateSource = str | os.PathLike[str] | Mapping[str, Tensor]
"""A state dict of an OpenSTL model, or a file holding one (also a Lightning checkpoint's ``state_dict``, whose keys
start with ``model.``); files load with ``weights_only=True``."""


def openstl_patch_order(channels: int, patch_size: int) -> Tensor:
    """The index, in OpenSTL's patch layout, of each of our patch channels: ours[k] = theirs[order[k]].

    Ours (pixel_unshuffle) is c p^2 + i p + j for channel c at row i, column j of the patch; OpenSTL's
    (reshape_patch) is (i p + j) C + c.
    """
    c, i, j = torch.meshgrid(torch.arange(channels), torch.arange(patch_size), torch.arange(patch_size), indexing="ij")
    return ((i * patch_size + j) * channels + c).flatten()


def predrnn_from_openstl(source: StateSource, *, in_channels: int = 1, default_horizon: int = 10) -> PredRNN:
    """A PredRNN (or PredRNNv2, when the weights have OpenSTL's ``adapter``) holding OpenSTL's weights.

    Args:
        source: a state dict of OpenSTL's PredRNN_Model / PredRNNv2_Model, or a file holding one (see
            `StateSource`).
        in_channels: channels C of the frames (the weights only give C p^2).
        default_horizon: the model's default horizon.

    Raises:
        ValueError: the weights are not a PredRNN's, or use OpenSTL's layer norm (whose affine parameters are per
            pixel: ours are per channel, so they cannot be carried over).
    """
    state = _state_dict(source)
    layers = _count_layers(state, "cell_list.{}.conv_x.0.weight", "PredRNN")
    first = state["cell_list.0.conv_x.0.weight"]  # (7F, C p^2, k, k)
    hidden, kernel = first.shape[0] // 7, first.shape[-1]
    patch_size = _patch_size(first.shape[1], in_channels)
    model_class = PredRNNv2 if "adapter.weight" in state else PredRNN
    model = model_class(
        in_channels=in_channels,
        hidden_channels=hidden,
        num_layers=layers,
        kernel_size=kernel,
        patch_size=patch_size,
        default_horizon=default_horizon,
    )
    renamed = {key.replace("cell_list.", "cells.", 1): value for key, value in state.items()}
    return _load(model, renamed, ("cells.", "conv_last.", "adapter."), in_channels, patch_size)


def predrnnpp_from_openstl(source: StateSource, *, in_channels: int = 1, default_horizon: int = 10) -> PredRNNpp:
    """A PredRNN++ holding OpenSTL's weights (PredRNNpp_Model).

    OpenSTL's Causal LSTM cells hold a ``conv_o`` that their forward never uses: it is left out.

    Args:
        source: a state dict of OpenSTL's PredRNNpp_Model, or a file holding one (see `StateSource`).
        in_channels: channels C of the frames (the weights only give C p^2).
        default_horizon: the model's default horizon.

    Raises:
        ValueError: the weights are not a PredRNN++'s, or use OpenSTL's layer norm.
    """
    state = _state_dict(source)
    layers = _count_layers(state, "cell_list.{}.conv_c2m.0.weight", "PredRNN++")
    first = state["cell_list.0.conv_x.0.weight"]  # (7F, C p^2, k, k)
    model = PredRNNpp(
        in_channels=in_channels,
        hidden_channels=first.shape[0] // 7,
        num_layers=layers,
        kernel_size=first.shape[-1],
        patch_size=_patch_size(first.shape[1], in_channels),
        default_horizon=default_horizon,
    )
    renamed = {
        key.replace("cell_list.", "cells.", 1)
        .replace("gradient_highway.x_concat.", "highway.conv_x.", 1)
        .replace("gradient_highway.z_concat.", "highway.conv_z.", 1): value
        for key, value in state.items()
        if ".conv_o." not in key  # unused by OpenSTL's forward
    }
    return _load(model, renamed, ("cells.", "highway.", "conv_last."), in_channels, model.patch_size)


def mim_from_openstl(source: StateSource, *, in_channels: int = 1, default_horizon: int = 10) -> MIM:
    """A MIM holding OpenSTL's weights (MIM_Model); the frame size comes from the per-pixel peepholes.

    OpenSTL's MIM-N modules hold a ``conv_last`` that their forward never uses: it is left out.

    Args:
        source: a state dict of OpenSTL's MIM_Model, or a file holding one (see `StateSource`).
        in_channels: channels C of the frames (the weights only give C p^2).
        default_horizon: the model's default horizon.

    Raises:
        ValueError: the weights are not a MIM's, or use OpenSTL's layer norm.
    """
    state = _state_dict(source)
    layers = _count_layers(state, "stlstm_layer.{}.conv_last.weight", "MIM")
    first = state["stlstm_layer.0.conv_x.0.weight"]  # (7F, C p^2, k, k)
    patch_size = _patch_size(first.shape[1], in_channels)
    if "stlstm_layer_diff.0.oc_weight" not in state:
        raise ValueError("expected OpenSTL MIM weights with MIM-N modules (stlstm_layer_diff.0.oc_weight, ...)")
    grid = state["stlstm_layer_diff.0.oc_weight"].shape[-2:]  # (H / p, W / p)
    model = MIM(
        in_channels=in_channels,
        height=grid[0] * patch_size,
        width=grid[1] * patch_size,
        hidden_channels=first.shape[0] // 7,
        num_layers=layers,
        kernel_size=first.shape[-1],
        patch_size=patch_size,
        default_horizon=default_horizon,
    )
    names = {
        "conv_x_cc.": "conv_x.",
        "conv_t_cc.": "conv_h.",
        "conv_s_cc.": "conv_m.",
        "conv_x_concat.": "stationary.conv_x.",
        "conv_h_concat.": "stationary.conv_h.",
        "ct_weight": "stationary.peephole_c",
        "oc_weight": "stationary.peephole_o",
    }
    renamed = {}
    for key, value in state.items():
        if key.startswith("stlstm_layer_diff."):
            if key.endswith(".conv_last.weight"):
                continue  # unused by OpenSTL's forward
            key = key.replace("stlstm_layer_diff.", "differences.", 1)
            for theirs, ours in names.items():
                key = key.replace(theirs, ours.removeprefix("stationary."))
        elif key.startswith("stlstm_layer."):
            key = key.replace("stlstm_layer.", "cells.", 1)
            if not key.startswith("cells.0."):
                for theirs, ours in names.items():
                    key = key.replace(theirs, ours)
        renamed[key] = value
    return _load(model, renamed, ("cells.", "differences.", "conv_last."), in_channels, patch_size)


def convlstm_s_from_openstl(
    source: StateSource, *, in_channels: int = 1, default_horizon: int = 10
) -> NextFramePredictor:
    """OpenSTL's ConvLSTM (ConvLSTM_Model; ConvLSTM-S in its tables) as the registered ``openstl_convlstm_s``: a
    [`NextFramePredictor`][convlstm.models.NextFramePredictor] on patches with no encoder stages, one ConvLSTM layer
    per OpenSTL cell and a 1x1 convolution back to the patches. The widths, the kernel and the patch size come from
    the weights.

    OpenSTL's cells convolve x and h without biases and add no forget bias in their forward (the ``_forget_bias``
    they set is never used): the gate biases and the output convolution's bias are set to zero, which reproduces
    that. Each cell also holds a ``conv_o`` and a ``conv_last`` that its forward never uses: they are left out.

    Args:
        source: a state dict of OpenSTL's ConvLSTM_Model, or a file holding one (see `StateSource`).
        in_channels: channels C of the frames (the weights only give C p^2).
        default_horizon: the model's default horizon.

    Raises:
        ValueError: the weights are not a ConvLSTM_Model's, or use OpenSTL's layer norm.
    """
    state = _state_dict(source)
    layers = _count_layers(state, "cell_list.{}.conv_h.0.weight", "ConvLSTM")
    first = state["cell_list.0.conv_x.0.weight"]  # (4 F_1, C p^2, k, k)
    hidden = tuple(state[f"cell_list.{layer}.conv_h.0.weight"].shape[1] for layer in range(layers))
    if "cell_list.0.conv_m.0.weight" in state or first.shape[0] != 4 * hidden[0]:
        raise ValueError(
            f"expected OpenSTL ConvLSTM weights (conv_x to 4 gates, no conv_m), got conv_x with {first.shape[0]} "
            f"outputs for {hidden[0]} hidden channels"
        )
    patch_size = _patch_size(first.shape[1], in_channels)
    model = create_model(
        "openstl_convlstm_s",
        in_channels=in_channels,
        hidden_channels=hidden,
        recurrent_kernel_size=first.shape[-1],
        patch_size=patch_size,
        default_horizon=default_horizon,
    )
    assert isinstance(model, NextFramePredictor)
    renamed: dict[str, Tensor] = {}
    for layer, width in enumerate(hidden):
        theirs, ours = f"cell_list.{layer}.", f"rnn.cells.{layer}."
        renamed[ours + "input_conv.weight"] = state[theirs + "conv_x.0.weight"]
        renamed[ours + "recurrent_conv.weight"] = state[theirs + "conv_h.0.weight"]
        renamed[ours + "bias"] = first.new_zeros(4 * width)
    renamed["decoder.0.weight"] = state["conv_last.weight"]
    renamed["decoder.0.bias"] = first.new_zeros(first.shape[1])
    return _load(
        model,
        renamed,
        ("rnn.", "decoder."),
        in_channels,
        patch_size,
        input_key="rnn.cells.0.input_conv.weight",
        output_key="decoder.0.weight",
    )


def e3dlstm_from_openstl(source: StateSource, *, in_channels: int = 1, default_horizon: int = 10) -> E3DLSTM:
    """An E3D-LSTM holding OpenSTL's weights (E3DLSTM_Model), with OpenSTL's wiring (the recall reads every earlier
    cell state; the spatiotemporal memory is not passed on); the window, the kernels and the frame size come from the
    weights (the cells' layer norm has a weight per pixel).

    Args:
        source: a state dict of OpenSTL's E3DLSTM_Model, or a file holding one (see `StateSource`).
        in_channels: channels C of the frames (the weights only give C p^2).
        default_horizon: the model's default horizon.

    Raises:
        ValueError: the weights are not an E3DLSTM_Model's, or use OpenSTL's layer norm on the gates.
    """
    state = _state_dict(source)
    layers = _count_layers(state, "cell_list.{}.conv_gm.0.conv3d.weight", "E3D-LSTM")
    first = state["cell_list.0.conv_x.0.conv3d.weight"]  # (7F, C p^2, k_t, k, k)
    norm = state.get("cell_list.0._norm_c_t.weight")  # (F, τ, H / p, W / p)
    if norm is None or norm.ndim != 4:
        raise ValueError("expected OpenSTL E3D-LSTM weights with the cells' norm (cell_list.0._norm_c_t.weight)")
    patch_size = _patch_size(first.shape[1], in_channels)
    model = E3DLSTM(
        in_channels=in_channels,
        height=norm.shape[2] * patch_size,
        width=norm.shape[3] * patch_size,
        hidden_channels=first.shape[0] // 7,
        num_layers=layers,
        kernel_size=first.shape[-1],
        temporal_kernel_size=first.shape[2],
        window_length=norm.shape[1],
        patch_size=patch_size,
        default_horizon=default_horizon,
    )
    names = {".conv3d.": ".", ".conv_gm.": ".conv_m.", ".conv_new_cell.": ".conv_oc.", ".conv_new_gm.": ".conv_om."}
    renamed = {}
    for key, value in state.items():
        key = key.replace("cell_list.", "cells.", 1).replace("._norm_c_t.", ".cell_norm.")
        for theirs, ours in names.items():
            key = key.replace(theirs, ours)
        renamed[key] = value
    return _load(model, renamed, ("cells.", "conv_last."), in_channels, patch_size)


def simvp_from_openstl(source: StateSource, *, default_horizon: int | None = None) -> SimVP:
    """A SimVP with gSTA or TAU holding OpenSTL's weights (SimVP_Model with model_type gSTA or tau); the sizes come
    from the weights.

    Args:
        source: a state dict of OpenSTL's SimVP_Model, or a file holding one (see `StateSource`).
        default_horizon: the model's default horizon (None: as many frames as the context).

    Raises:
        ValueError: the weights are not a SimVP's, or its translator is another than gSTA or TAU.
    """
    state = _state_dict(source)
    encoder = _count("enc.enc.{}.conv.conv.weight", state)
    blocks = _count("hid.enc.{}.block.norm1.weight", state)
    if encoder == 0 or blocks == 0 or "dec.readout.weight" not in state:
        found = sorted(state)[:6]
        raise ValueError(f"expected OpenSTL SimVP weights (enc.enc.0.conv.conv.weight, ...), got {found}")
    if "hid.enc.0.block.attn.proj_1.weight" not in state or "hid.enc.0.block.mlp.fc1.weight" not in state:
        raise ValueError("these SimVP weights have another translator than gSTA or TAU, which this library has not")
    first = state["enc.enc.0.conv.conv.weight"]  # (F_S, C, k, k)
    spatial, stacked = first.shape[0], state["hid.enc.0.block.norm1.weight"].shape[0]
    tau = "hid.enc.0.block.attn.spatial_gating_unit.fc.0.weight" in state
    model = SimVP(
        in_channels=first.shape[1],
        context_frames=stacked // spatial,
        translator="tau" if tau else "gsta",
        spatial_channels=spatial,
        temporal_channels=state["hid.enc.1.block.norm1.weight"].shape[0],
        spatial_layers=encoder,
        temporal_layers=blocks,
        encoder_kernel_size=first.shape[-1],
        decoder_kernel_size=state["dec.dec.0.conv.conv.0.weight"].shape[-1],
        mlp_ratio=state["hid.enc.0.block.mlp.fc1.weight"].shape[0] / stacked,
        default_horizon=stacked // spatial if default_horizon is None else default_horizon,
    )
    renames = [
        (r"^enc\.enc\.(\d+)\.conv\.(conv|norm)\.", r"encoder.\1.\2."),
        (r"^dec\.dec\.(\d+)\.conv\.conv\.(0\.)?", r"decoder.\1.conv."),  # "0.": before the pixel shuffle
        (r"^dec\.dec\.(\d+)\.conv\.norm\.", r"decoder.\1.norm."),
        (r"^dec\.readout\.", "readout."),
        (r"^hid\.enc\.(\d+)\.block\.", r"translator.\1.0."),
        (r"^hid\.enc\.(\d+)\.reduction\.", r"translator.\1.1."),
        (r"\.attn\.spatial_gating_unit\.fc\.0\.", ".attn.squeeze."),
        (r"\.attn\.spatial_gating_unit\.fc\.2\.", ".attn.excite."),
        (r"\.attn\.spatial_gating_unit\.", ".attn."),
        (r"\.mlp\.dwconv\.dwconv\.", ".mlp.dwconv."),
    ]
    renamed = {}
    for key, value in state.items():
        for pattern, replacement in renames:
            key = re.sub(pattern, replacement, key)
        renamed[key] = value
    return _load(model, renamed, ("encoder.", "translator.", "decoder.", "readout."), model.config.in_channels, 1)


def model_from_openstl(source: StateSource, *, in_channels: int = 1, default_horizon: int | None = None) -> nn.Module:
    """The model that OpenSTL's weights belong to, holding them: ConvLSTM (ConvLSTM-S), PredRNN, PredRNN-V2,
    PredRNN++, MIM, E3D-LSTM, or SimVP with gSTA or TAU, told apart by the weights' names.

    Args:
        source: a state dict of one of those OpenSTL models, or a file holding one (see `StateSource`).
        in_channels: channels C of the frames (SimVP's weights give it: there this is not used).
        default_horizon: the model's default horizon (None: 10 for the recurrent models, the context's length for
            SimVP).

    Raises:
        ValueError: the weights are none of those models'.
    """
    state = _state_dict(source)
    if "enc.enc.0.conv.conv.weight" in state:
        return simvp_from_openstl(state, default_horizon=default_horizon)
    recurrent = {"in_channels": in_channels, "default_horizon": 10 if default_horizon is None else default_horizon}
    if "stlstm_layer.0.conv_x.0.weight" in state:
        return mim_from_openstl(state, **recurrent)
    if "gradient_highway.x_concat.0.weight" in state:
        return predrnnpp_from_openstl(state, **recurrent)
    if "cell_list.0.conv_gm.0.conv3d.weight" in state:
        return e3dlstm_from_openstl(state, **recurrent)
    if "cell_list.0.conv_m.0.weight" in state:
        return predrnn_from_openstl(state, **recurrent)
    if "cell_list.0.conv_h.0.weight" in state:
        return convlstm_s_from_openstl(state, **recurrent)
    found = sorted(state)[:6]
    raise ValueError(
        "expected the weights of OpenSTL's ConvLSTM, PredRNN, PredRNN-V2, PredRNN++, MIM, E3D-LSTM, SimVP or TAU, "
        f"got keys {found}, ..."
    )


def _state_dict(source: StateSource) -> dict[str, Tensor]:
    loaded = source if isinstance(source, Mapping) else torch.load(source, map_location="cpu", weights_only=True)
    if not isinstance(loaded, Mapping):
        raise ValueError(f"expected a state dict, got {type(loaded).__name__}")
    if "state_dict" in loaded and isinstance(loaded["state_dict"], Mapping):
        loaded = loaded["state_dict"]
    return {key.removeprefix("model."): value for key, value in loaded.items() if isinstance(value, Tensor)}


def _count(pattern: str, state: Mapping[str, Tensor]) -> int:
    """How many consecutive indices i from 0 have ``pattern.format(i)`` in ``state``."""
    count = 0
    while pattern.format(count) in state:
        count += 1
    return count


def _count_layers(state: Mapping[str, Tensor], pattern: str, model: str) -> int:
    """How many layers have ``pattern.format(layer)``; raises unless there is one, and the output convolution."""
    layers = _count(pattern, state)
    if layers == 0 or "conv_last.weight" not in state:
        found = sorted(state)[:6]
        raise ValueError(f"expected OpenSTL {model} weights ({pattern.format(0)}, ...), got {found}")
    if any(re.search(r"\.1\.(weight|bias)$", key) for key in state):  # (conv, LayerNorm) Sequentials
        raise ValueError(
            "these weights use OpenSTL's layer_norm, whose per-pixel affine parameters have no per-channel "
            "equivalent; only weights trained with layer_norm=0 convert"
        )
    return layers


def _patch_size(patched: int, in_channels: int) -> int:
    """p from the C p^2 channels that the bottom layer reads."""
    patch_size = round((patched / in_channels) ** 0.5)
    if in_channels * patch_size**2 != patched:
        raise ValueError(
            f"the bottom layer reads {patched} channels, which is not in_channels={in_channels} times a square "
            "patch; give the frames' in_channels"
        )
    return patch_size


def _load(
    model: M,
    state: Mapping[str, Tensor],
    prefixes: tuple[str, ...],
    in_channels: int,
    patch_size: int,
    *,
    input_key: str = "cells.0.conv_x.0.weight",
    output_key: str = "conv_last.weight",
) -> M:
    """Loads the entries of ``state`` (already under our names) that start with ``prefixes``, permuting the bottom
    layer's input convolution (``input_key``) and the output convolution (``output_key``) from OpenSTL's patch order
    to ours. The model takes the weights' dtype.

    Raises:
        ValueError: an entry is missing, left over or of another shape (named).
    """
    dtypes = {value.dtype for value in state.values() if value.is_floating_point()}
    if len(dtypes) == 1:
        model.to(dtype=dtypes.pop())  # float64 weights stay float64
    order = openstl_patch_order(in_channels, patch_size)
    ours: dict[str, Tensor] = {}
    for key, value in state.items():
        if not key.startswith(prefixes):
            continue  # e.g. buffers of OpenSTL's losses
        if key == input_key:
            value = value[:, order]
        elif key == output_key:
            value = value[order]
        ours[key] = value
    try:
        missing, unexpected = model.load_state_dict(ours, strict=False)
    except RuntimeError as error:  # a shape that does not fit, e.g. layers of different widths
        raise ValueError(f"the weights do not fit {type(model).__name__}: {error}") from None
    if missing or unexpected:
        raise ValueError(f"the weights do not fit {type(model).__name__}: missing {missing}, unexpected {unexpected}")
    return model
