"""Conversions from other libraries: Keras 3 ConvLSTM layers to [`convlstm.ConvLSTM`][convlstm.ConvLSTM], OpenSTL's
PredRNN weights to [`convlstm.models.PredRNN`][convlstm.models.PredRNN]."""

from convlstm.interop.keras import from_keras, from_keras_weights, keras_to_torch_layout, torch_to_keras_layout
from convlstm.interop.openstl import openstl_patch_order, predrnn_from_openstl

__all__ = [
    "from_keras",
    "from_keras_weights",
    "keras_to_torch_layout",
    "openstl_patch_order",
    "predrnn_from_openstl",
    "torch_to_keras_layout",
]
