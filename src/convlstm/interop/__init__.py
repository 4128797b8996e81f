"""Conversions from other libraries: Keras 3 ConvLSTM layers to [`convlstm.ConvLSTM`][convlstm.ConvLSTM], OpenSTL's
weights to this library's ConvLSTM-S, PredRNN family, E3D-LSTM and SimVP
([`model_from_openstl`][convlstm.interop.model_from_openstl])."""

from convlstm.interop.keras import from_keras, from_keras_weights, keras_to_torch_layout, torch_to_keras_layout
from convlstm.interop.openstl import (
    convlstm_s_from_openstl,
    e3dlstm_from_openstl,
    mim_from_openstl,
    model_from_openstl,
    openstl_patch_order,
    predrnn_from_openstl,
    predrnnpp_from_openstl,
    simvp_from_openstl,
)

__all__ = [
    "convlstm_s_from_openstl",
    "e3dlstm_from_openstl",
    "from_keras",
    "from_keras_weights",
    "keras_to_torch_layout",
    "mim_from_openstl",
    "model_from_openstl",
    "openstl_patch_order",
    "predrnn_from_openstl",
    "predrnnpp_from_openstl",
    "simvp_from_openstl",
    "torch_to_keras_layout",
]
