"""Convolutional recurrent layers: pure torch.nn modules."""

from convlstm.layers.activations import ACTIVATIONS, get_activation
from convlstm.layers.causal_lstm import CausalLSTMCell, GradientHighwayUnit
from convlstm.layers.conv_lstm import ConvGRU, ConvLSTM
from convlstm.layers.e3d_lstm import E3DLSTMState, Eidetic3DLSTMCell, WindowConv3d, eidetic_recall
from convlstm.layers.folding import per_frame
from convlstm.layers.gru_cell import ConvGRUCell
from convlstm.layers.lstm_cell import DEFAULT_FORGET_BIAS, ConvLSTMCell, lstm_pointwise
from convlstm.layers.mim import MIMBlock, MIMBlockState, PeepholeLSTMCell
from convlstm.layers.norm import BlockNorm
from convlstm.layers.simvp import (
    ConvNormAct,
    GatedSpatialAttention,
    MetaFormerBlock,
    MixMLP,
    TemporalAttention,
)
from convlstm.layers.st_lstm import SpatioTemporalLSTMCell, STLSTMState
from convlstm.layers.trajgru import TrajGRU, TrajGRUCell

__all__ = [
    "ACTIVATIONS",
    "DEFAULT_FORGET_BIAS",
    "BlockNorm",
    "CausalLSTMCell",
    "ConvGRU",
    "ConvGRUCell",
    "ConvLSTM",
    "ConvLSTMCell",
    "ConvNormAct",
    "E3DLSTMState",
    "Eidetic3DLSTMCell",
    "GatedSpatialAttention",
    "GradientHighwayUnit",
    "MIMBlock",
    "MIMBlockState",
    "MetaFormerBlock",
    "MixMLP",
    "PeepholeLSTMCell",
    "STLSTMState",
    "SpatioTemporalLSTMCell",
    "TemporalAttention",
    "TrajGRU",
    "TrajGRUCell",
    "WindowConv3d",
    "eidetic_recall",
    "get_activation",
    "lstm_pointwise",
    "per_frame",
]
