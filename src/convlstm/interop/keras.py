"""Keras 3 ConvLSTM1D / ConvLSTM2D / ConvLSTM3D layers as equivalent [`convlstm.ConvLSTM`][convlstm.ConvLSTM] layers.

Keras is an optional dependency (``pip install convlstm[keras]``); it is imported only by
[`from_keras`][convlstm.interop.from_keras]. The weights-only path
[`from_keras_weights`][convlstm.interop.from_keras_weights] and the layout helpers need no Keras at all.

What maps onto what (Keras -> ours):
    kernel (k..., C_in, 4F)          -> ``cell.input_conv.weight`` (4F, C_in, k...)
    recurrent_kernel (k..., F, 4F)   -> ``cell.recurrent_conv.weight`` (4F, F, k...)
    bias (4F,)                       -> ``cell.bias``; gate blocks are [i, f, c, o] on both sides
    strides / padding / dilation_rate -> stride / padding / dilation of the input-to-state convolution; Keras'
                                        state-to-state convolution has no dilation, so recurrent_dilation=1
    go_backwards                     -> reverse=True
    dropout / recurrent_dropout      -> input_dropout / recurrent_dropout (one mask per gate, fixed over a call)

Differences that remain, all at the call site rather than in the numbers:
    * layout: ours is channels-first, (B, T, C, *spatial); a channels_last Keras input goes through
      [`keras_to_torch_layout`][convlstm.interop.keras_to_torch_layout] and a Keras-shaped output comes back with
      [`torch_to_keras_layout`][convlstm.interop.torch_to_keras_layout];
    * go_backwards: our output stays aligned with the input frames, while Keras returns its sequence in processing
      order, so Keras' output is ``output.flip(1)``;
    * return_sequences=False: Keras' output is the final hidden state, ``state[0][0]`` here (``output[:, -1]``
      without go_backwards, ``output[:, 0]`` with it); return_state=True adds ``h, c = state[0]``;
    * no Keras ``mask`` argument; dropout draws different random numbers (same distribution and structure);
      a mixed-precision dtype policy (e.g. "mixed_float16") computes in half precision in Keras, here in the
      dtype of the returned module (float32 unless changed).
"""

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from convlstm.layers.conv_lstm import ConvLSTM
from convlstm.utils.checks import check_choice, check_probability

logger = logging.getLogger(__name__)

__all__ = ["from_keras", "from_keras_weights", "keras_to_torch_layout", "torch_to_keras_layout"]

#: Keras activation names and ours. Keras 3's "hard_sigmoid" is clip(x / 6 + 0.5, 0, 1), which our
#: "hard_sigmoid" is too; Keras 2's clip(0.2 x + 0.5, 0, 1) is our "hard_sigmoid_keras2".
_ACTIVATIONS = {
    "tanh": "tanh",
    "sigmoid": "sigmoid",
    "relu": "relu",
    "hard_sigmoid": "hard_sigmoid",
    "linear": "linear",
}

_KERAS_CLASSES = ("ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")


def from_keras(layer: Any) -> ConvLSTM:
    """Builds a [`convlstm.ConvLSTM`][convlstm.ConvLSTM] that computes what a built Keras 3 ConvLSTM layer computes.

    Args:
        layer: a built ``keras.layers.ConvLSTM1D``, ``ConvLSTM2D`` or ``ConvLSTM3D`` (it has weights once it has
            been called on an input or ``layer.build(input_shape)`` ran).

    Returns:
        A one-layer ConvLSTM with ``spatial_dims`` 1, 2 or 3, in eval mode (as a Keras layer called without
        ``training=True``; call ``.train()`` to fine-tune with its dropout). It is channels-first and keeps its
        outputs aligned with the input frames: see the module docstring and
            [`from_keras_weights`][convlstm.interop.from_keras_weights] for how
        Keras' return_sequences / return_state / go_backwards outputs are read off ours.

    Raises:
        ImportError: Keras is not installed (install the extra ``convlstm[keras]``).
        ValueError: ``layer`` is not a built Keras ConvLSTM layer, or uses an option that changes the computation
            and has no equivalent here (see [`from_keras_weights`][convlstm.interop.from_keras_weights]).

    Examples:
        >>> model = from_keras(keras_layer)
        >>> out, [(h, c)] = model(keras_to_torch_layout(torch.as_tensor(x_keras)))
    """
    keras = _import_keras()
    classes = tuple(getattr(keras.layers, name) for name in _KERAS_CLASSES)
    if not isinstance(layer, classes):
        raise ValueError(
            f"layer must be a keras.layers.ConvLSTM1D, ConvLSTM2D or ConvLSTM3D, got {type(layer).__name__}"
        )
    if not layer.built:
        raise ValueError(
            f"layer {layer.name!r} has no weights yet: call it on an input or run layer.build(input_shape) first"
        )
    cell = layer.cell
    bias = None if cell.bias is None else keras.ops.convert_to_numpy(cell.bias)
    return from_keras_weights(
        keras.ops.convert_to_numpy(cell.kernel),
        keras.ops.convert_to_numpy(cell.recurrent_kernel),
        bias,
        layer.get_config(),
    )


def from_keras_weights(
    kernel: npt.ArrayLike,
    recurrent_kernel: npt.ArrayLike,
    bias: npt.ArrayLike | None,
    config: Mapping[str, Any],
    *,
    hard_sigmoid: str = "keras3",
) -> ConvLSTM:
    """Builds the equivalent [`convlstm.ConvLSTM`][convlstm.ConvLSTM] from a Keras ConvLSTM layer's arrays and config.

    Needs no Keras: the arrays may come from ``layer.get_weights()`` or a weights file, and ``config`` is the dict of
    ``layer.get_config()`` (or of a saved model's JSON). Keys left out take Keras 3's defaults (padding "valid",
    recurrent_activation "sigmoid", ...); ``filters`` and ``kernel_size`` are read off the arrays and, when
    given, checked against them. Options that do not change the numbers are ignored: initializers (including
    unit_forget_bias), regularizers, constraints, seed, unroll, zero_output_for_mask, return_sequences,
    return_state, data_format (it only says how the caller lays out tensors; see
    [`keras_to_torch_layout`][convlstm.interop.keras_to_torch_layout]).

    With ``go_backwards=True`` the layer runs with ``reverse=True``: it processes the last frame first, but its
    output ``out[:, t]`` still belongs to input frame t, whereas Keras returns the sequence in processing order.
    Keras' return_sequences output is therefore ``out.flip(1)`` (then
    [`torch_to_keras_layout`][convlstm.interop.torch_to_keras_layout] for channels_last), its return_sequences=False
    output and its returned ``h`` are our final ``state[0][0]`` and its ``c`` is ``state[0][1]``, with or without
    go_backwards.

    Args:
        kernel: (k..., C_in, 4F) input-to-state kernel, gate blocks [i, f, c, o] on the last axis.
        recurrent_kernel: (k..., F, 4F) state-to-state kernel.
        bias: (4F,), or None when ``config["use_bias"]`` is False.
        config: the layer's configuration dict.
        hard_sigmoid: which Keras "hard_sigmoid" the config means: "keras3" (clip(x / 6 + 0.5, 0, 1), the default)
            or "keras2" (clip(0.2 x + 0.5, 0, 1), for configs saved by Keras 2 / tf.keras <= 2.15).

    Returns:
        A one-layer ConvLSTM in eval mode holding copies of the weights.

    Raises:
        ValueError: an array has the wrong shape or non-finite values, or the config has an unknown activation,
            padding or data_format, stateful=True, or dropout / recurrent_dropout of 1 or more.
    """
    check_choice("hard_sigmoid", hard_sigmoid, ("keras3", "keras2"))
    if not isinstance(config, Mapping):
        raise ValueError(f"config must be the dict of layer.get_config(), got {type(config).__name__}")
    k = _as_array(kernel, "kernel")
    rk = _as_array(recurrent_kernel, "recurrent_kernel")
    rank = k.ndim - 2
    if rank not in (1, 2, 3):
        raise ValueError(f"kernel must have shape (k..., C_in, 4F) with 1 to 3 kernel axes, got shape {k.shape}")
    in_channels, gate_channels = k.shape[-2], k.shape[-1]
    if in_channels < 1 or gate_channels < 4 or gate_channels % 4 != 0 or min(k.shape[:rank]) < 1:
        raise ValueError(
            f"kernel must have shape (k..., C_in >= 1, 4F) with 4F a positive multiple of 4, got {k.shape}"
        )
    filters = gate_channels // 4
    kernel_size = tuple(k.shape[:rank])
    if "filters" in config and config["filters"] != filters:
        raise ValueError(
            f"config filters={config['filters']!r} does not match kernel shape {k.shape} (4F={4 * filters})"
        )
    if "kernel_size" in config and _per_dim(config["kernel_size"], rank, "kernel_size") != kernel_size:
        raise ValueError(f"config kernel_size={config['kernel_size']!r} does not match kernel shape {k.shape}")
    expected_rk = (*kernel_size, filters, gate_channels)
    if rk.shape != expected_rk:
        raise ValueError(f"recurrent_kernel must have shape {expected_rk} to match kernel {k.shape}, got {rk.shape}")
    use_bias = bool(config.get("use_bias", True))
    if use_bias and bias is None:
        raise ValueError("bias is None but config use_bias=True: pass the (4F,) bias array")
    if not use_bias and bias is not None:
        raise ValueError("bias was given but config use_bias=False")
    b = None if bias is None else _as_array(bias, "bias")
    if b is not None and b.shape != (gate_channels,):
        raise ValueError(f"bias must have shape ({gate_channels},), got {b.shape}")

    _check_unsupported(config)
    padding = str(config.get("padding", "valid")).lower()
    check_choice("config padding", padding, ("same", "valid"))
    model = ConvLSTM(
        in_channels,
        filters,
        kernel_size,
        num_layers=1,
        spatial_dims=rank,
        stride=_per_dim(config.get("strides", 1), rank, "strides"),
        padding=padding,  # type: ignore[arg-type]
        dilation=_per_dim(config.get("dilation_rate", 1), rank, "dilation_rate"),
        recurrent_dilation=1,
        bias=use_bias,
        activation=_activation(config.get("activation", "tanh"), "activation", hard_sigmoid),
        recurrent_activation=_activation(
            config.get("recurrent_activation", "sigmoid"), "recurrent_activation", hard_sigmoid
        ),
        reverse=bool(config.get("go_backwards", False)),
        input_dropout=_dropout(config.get("dropout", 0.0), "dropout"),
        recurrent_dropout=_dropout(config.get("recurrent_dropout", 0.0), "recurrent_dropout"),
    )
    cell = model.cell(0)
    if cell.input_conv is None:
        raise AssertionError("unreachable: in_channels >= 1")
    # (k..., C, 4F) -> (4F, C, k...): the two channel axes to the front, the kernel axes keep their order.
    to_torch = (rank + 1, rank, *range(rank))
    with torch.no_grad():
        cell.input_conv.weight.copy_(torch.from_numpy(k).permute(to_torch))
        cell.recurrent_conv.weight.copy_(torch.from_numpy(rk).permute(to_torch))
        if b is not None and cell.bias is not None:
            cell.bias.copy_(torch.from_numpy(b))
    return model.eval()


def keras_to_torch_layout(x: Tensor | np.ndarray) -> Tensor:
    """Moves the channels of a Keras channels_last sequence next to time: (B, T, *spatial, C) -> (B, T, C, *spatial).

    Accepts a tensor or a NumPy array (shared, not copied) with 1 to 3 spatial axes; returns a tensor view.
    """
    return _as_sequence(x, "x").movedim(-1, 2)


def torch_to_keras_layout(x: Tensor | np.ndarray) -> Tensor:
    """The inverse of [`keras_to_torch_layout`][convlstm.interop.keras_to_torch_layout]: (B, T, C, *spatial) -> (B, T,
    *spatial, C)."""
    return _as_sequence(x, "x").movedim(2, -1)


# --------------------------------------------------------------------------------------------------- helpers
def _import_keras() -> Any:
    try:
        import keras
    except ImportError as error:
        raise ImportError(
            "convlstm.interop.keras.from_keras needs Keras 3: pip install 'convlstm[keras]' "
            f"(and set KERAS_BACKEND, e.g. to 'torch', before importing it); import failed with: {error}"
        ) from error
    return keras


def _as_array(value: npt.ArrayLike, name: str) -> np.ndarray:
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{name} must be a floating-point array, got dtype {array.dtype}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite, got NaN or infinite values in an array of shape {array.shape}")
    # Contiguous float32 so that torch.from_numpy can read it; copying into the parameters casts further if needed.
    return np.ascontiguousarray(array, dtype=np.float32)


def _per_dim(value: Any, rank: int, name: str) -> tuple[int, ...]:
    values = (value,) * rank if isinstance(value, int) else tuple(value) if isinstance(value, list | tuple) else None
    if values is None or len(values) != rank or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"config {name} must be an int or {rank} ints, got {value!r}")
    return values


def _activation(value: Any, name: str, hard_sigmoid: str) -> str:
    if not isinstance(value, str) or value not in _ACTIVATIONS:
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise ValueError(f"config {name} must be one of {sorted(_ACTIVATIONS)} to convert, got {shown}")
    if value == "hard_sigmoid" and hard_sigmoid == "keras2":
        return "hard_sigmoid_keras2"
    return _ACTIVATIONS[value]


def _dropout(value: Any, name: str) -> float:
    # Keras clips to [0, 1] and silently skips a rate of 1; we ask for the intended rate instead.
    return check_probability(f"config {name}", value)


def _check_unsupported(config: Mapping[str, Any]) -> None:
    if config.get("stateful", False):
        raise ValueError(
            "config stateful=True has no equivalent: our layer takes and returns its state explicitly "
            "(out, state = model(x, state)); convert with config stateful=False and carry the state yourself"
        )
    data_format = config.get("data_format") or "channels_last"
    check_choice("config data_format", data_format, ("channels_last", "channels_first"))
    dtype = config.get("dtype")
    policy = dtype.get("config", {}).get("name") if isinstance(dtype, Mapping) else dtype
    if isinstance(policy, str) and policy != "float32":
        logger.warning(
            "Keras dtype policy %r: the converted layer computes in torch's dtype of its parameters "
            "(float32 unless changed), so results differ by that precision",
            policy,
        )


def _as_sequence(x: Tensor | np.ndarray, name: str) -> Tensor:
    tensor = torch.as_tensor(x) if isinstance(x, np.ndarray) else x
    if not isinstance(tensor, Tensor):
        raise ValueError(f"{name} must be a tensor or NumPy array, got {type(x).__name__}")
    if tensor.ndim not in (4, 5, 6):
        raise ValueError(
            f"{name} must be a sequence with batch, time, channel and 1 to 3 spatial axes (4 to 6 dimensions), "
            f"got shape {tuple(tensor.shape)}"
        )
    return tensor
