"""Gate activations by name, including the two incompatible definitions of hard_sigmoid."""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

Activation = Callable[[Tensor], Tensor]


def hard_sigmoid_keras2(x: Tensor) -> Tensor:
    """Keras 2 / tf.keras <= 2.15: clip(0.2 x + 0.5, 0, 1)."""
    return (0.2 * x + 0.5).clamp(0.0, 1.0)


def hard_sigmoid_keras3(x: Tensor) -> Tensor:
    """Keras 3 (and torch.nn.functional.hardsigmoid): clip(x / 6 + 0.5, 0, 1)."""
    return F.hardsigmoid(x)


def neural_gpu_sigmoid(x: Tensor) -> Tensor:
    """The Neural GPU's saturating sigmoid (Kaiser & Sutskever 2015): clip(1.2 sigmoid(x) - 0.1, 0, 1)."""
    return (1.2 * torch.sigmoid(x) - 0.1).clamp(0.0, 1.0)


def leaky_relu_02(x: Tensor) -> Tensor:
    """Leaky ReLU with negative slope 0.2, the activation of the TrajGRU networks of Shi et al. (2017)."""
    return F.leaky_relu(x, 0.2)


def _identity(x: Tensor) -> Tensor:
    return x


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    # "hard_sigmoid" alone follows the Keras version people run today (Keras 3); the old one keeps its own name.
    "hard_sigmoid": hard_sigmoid_keras3,
    "hard_sigmoid_keras3": hard_sigmoid_keras3,
    "hard_sigmoid_keras2": hard_sigmoid_keras2,
    "neural_gpu_sigmoid": neural_gpu_sigmoid,
    "leaky_relu": leaky_relu_02,
    "linear": _identity,
}
"""Activations by name, as cells and layers accept them for ``activation`` and ``recurrent_activation``."""


def get_activation(name: str, *, argument: str = "activation") -> Activation:
    """Returns the activation function called ``name``.

    Raises:
        ValueError: ``name`` is not one of [`ACTIVATIONS`][convlstm.layers.ACTIVATIONS]; the message names ``argument``.
    """
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(f"{argument} must be one of {sorted(ACTIVATIONS)}, got {name!r}") from None
