"""The output end shared by the encoder-forecasters (ConvLSTM and FC-LSTM): the activation of the predicted pixels
and where the head's bias starts."""

import math
from typing import Literal

import torch
from torch import Tensor, nn

from convlstm.utils.checks import check_choice

OutputActivation = Literal["sigmoid", "none"]
OUTPUT_ACTIVATIONS = ("sigmoid", "none")


def check_output_head(output_activation: str, initial_mean: float | None) -> None:
    """Raises ValueError for an unknown activation, or an initial mean the activation cannot produce."""
    check_choice("output_activation", output_activation, OUTPUT_ACTIVATIONS)
    if initial_mean is None:
        return
    if isinstance(initial_mean, bool) or not isinstance(initial_mean, int | float) or not math.isfinite(initial_mean):
        raise ValueError(f"initial_mean must be a finite number or None, got {initial_mean!r}")
    if output_activation == "sigmoid" and not 0 < initial_mean < 1:
        raise ValueError(f"initial_mean must lie in (0, 1) with a sigmoid output, got {initial_mean!r}")


def start_at_mean(head: nn.Linear | nn.Conv2d, output_activation: OutputActivation, initial_mean: float) -> None:
    """Sets the bias of ``head``, the last layer, so that a fresh model predicts ``initial_mean`` everywhere.

    Why: on sparse frames (Moving MNIST's mean pixel is 0.05) a head that starts at sigmoid(0) = 0.5 spends its
    first steps pulling every pixel down; the large, uniform gradient of that phase drives the whole network to a
    uniform-grey output it is slow to leave. Started at the data's mean, the gradient carries only where the digits
    are (the usual prior initialisation of a classifier's last bias).
    """
    # A sigmoid head starts at the logit of the mean.
    value = math.log(initial_mean / (1 - initial_mean)) if output_activation == "sigmoid" else initial_mean
    if head.bias is None:
        raise ValueError("start_at_mean needs a head with a bias")
    with torch.no_grad():
        head.bias.fill_(value)


def activate(pixels: Tensor, output_activation: OutputActivation) -> Tensor:
    return torch.sigmoid(pixels) if output_activation == "sigmoid" else pixels
