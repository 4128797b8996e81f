"""Conversions from other libraries' ConvLSTM layers (Keras 3) to :class:`convlstm.ConvLSTM`."""

from convlstm.interop.keras import from_keras, from_keras_weights, keras_to_torch_layout, torch_to_keras_layout

__all__ = ["from_keras", "from_keras_weights", "keras_to_torch_layout", "torch_to_keras_layout"]
