"""Batching sequences of different lengths: pad along time, and say how long each one was."""

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import default_collate


def pad_collate(
    items: Sequence[Mapping[str, Any]], *, keys: Sequence[str] = ("context",), value: float = 0.0
) -> dict[str, Any]:
    """A DataLoader ``collate_fn`` for dict items whose ``keys`` hold sequences (T_i, C, *spatial) of different
    lengths: each is padded at the end along time to the longest, and ``f"{key}_lengths"`` (B,) int64 says how
    many leading frames of each are real. Other keys are batched by torch's default collate.

    The padded batch feeds a layer's ``lengths=`` or a forecaster's ``context_lengths=`` directly; use
    ``functools.partial(pad_collate, keys=("context", "target"))`` to pad more keys.

    Args:
        items: the dataset items of one batch.
        keys: the keys to pad (each must be in every item).
        value: the padding value.

    Returns:
        The batch: padded (B, T_max, C, *spatial) tensors under ``keys``, their lengths under ``key + "_lengths"``.

    Shape:
        ``items[i][key]``: (T_i, C, *spatial), equal except in T_i -> ``batch[key]``: (B, max T_i, C, *spatial);
        ``batch[key + "_lengths"]``: (B,).
    """
    if not isinstance(items, Sequence) or len(items) == 0:
        raise ValueError(f"items must be a non-empty sequence of dict items, got {items!r}")
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ValueError(f"items[{index}] must be a dict (str -> tensor), got {type(item).__name__}")
        missing = [key for key in keys if key not in item]
        if missing:
            raise ValueError(f"items[{index}] lacks the key(s) {missing} to pad; it has {sorted(item)}")
    batch: dict[str, Any] = default_collate([{k: v for k, v in item.items() if k not in keys} for item in items])
    for key in keys:
        sequences = [torch.as_tensor(item[key]) for item in items]
        batch[key], batch[f"{key}_lengths"] = pad_sequences(sequences, value=value, name=key)
    return batch


def pad_sequences(sequences: Sequence[Tensor], *, value: float = 0.0, name: str = "sequences") -> tuple[Tensor, Tensor]:
    """Stacks sequences (T_i, *frame) into a batch (B, max T_i, *frame) padded with ``value`` at the end.

    Args:
        sequences: tensors with equal frame shape and dtype, at least one frame each.
        value: the padding value.
        name: what to call them in errors.

    Returns:
        (padded batch, lengths (B,) int64).

    Shape:
        sequences[i]: (T_i, *frame) -> (B, max T_i, *frame), (B,).
    """
    if len(sequences) == 0:
        raise ValueError(f"{name}: need at least one sequence to pad, got none")
    first = sequences[0]
    for index, sequence in enumerate(sequences):
        if sequence.ndim < 1 or sequence.shape[0] < 1:
            raise ValueError(
                f"{name}[{index}] must have at least one frame in dim 0, got shape {tuple(sequence.shape)}"
            )
        if sequence.shape[1:] != first.shape[1:] or sequence.dtype != first.dtype:
            raise ValueError(
                f"{name}[{index}] must have frames of shape {tuple(first.shape[1:])} and dtype {first.dtype} like "
                f"{name}[0], got {tuple(sequence.shape[1:])} and {sequence.dtype}"
            )
    lengths = torch.tensor([s.shape[0] for s in sequences], dtype=torch.int64)
    padded = first.new_full((len(sequences), int(lengths.max()), *first.shape[1:]), value)
    for index, sequence in enumerate(sequences):
        padded[index, : sequence.shape[0]] = sequence
    return padded, lengths
