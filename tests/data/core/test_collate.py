"""pad_collate / pad_sequences: batches of sequences of different lengths, padded at the end with their lengths."""

import functools

import pytest
import torch
from torch.utils.data import DataLoader

from convlstm.data import pad_collate, pad_sequences


def _item(steps: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "context": torch.rand(steps, 1, 4, 5, generator=generator),
        "target": torch.rand(2, 1, 4, 5, generator=generator),
    }


def test_pads_context_at_the_end_and_returns_lengths() -> None:
    items = [_item(3, 0), _item(5, 1), _item(1, 2)]
    batch = DataLoader(items, batch_size=3, collate_fn=pad_collate).__iter__().__next__()
    assert batch["context"].shape == (3, 5, 1, 4, 5)
    assert batch["context_lengths"].tolist() == [3, 5, 1]
    assert batch["context_lengths"].dtype == torch.int64
    for b, item in enumerate(items):
        steps = item["context"].shape[0]
        assert torch.equal(batch["context"][b, :steps], item["context"])
        assert torch.all(batch["context"][b, steps:] == 0)
    assert torch.equal(batch["target"], torch.stack([item["target"] for item in items]))
    assert "target_lengths" not in batch


def test_more_keys_and_a_padding_value() -> None:
    items = [
        {"context": torch.ones(2, 3), "target": torch.ones(1, 3)},
        {"context": torch.ones(4, 3), "target": torch.ones(3, 3)},
    ]
    collate = functools.partial(pad_collate, keys=("context", "target"), value=-1.0)
    batch = collate(items)
    assert batch["target_lengths"].tolist() == [1, 3]
    assert torch.all(batch["target"][0, 1:] == -1) and torch.all(batch["context"][0, 2:] == -1)


def test_bad_items_are_named() -> None:
    with pytest.raises(ValueError, match=r"items\[1\] lacks the key\(s\) \['context'\]"):
        pad_collate([_item(2, 0), {"target": torch.ones(2)}])
    with pytest.raises(ValueError, match=r"context\[1\] must have frames of shape \(1, 4, 5\)"):
        pad_collate([_item(2, 0), {"context": torch.ones(2, 1, 4, 6), "target": torch.ones(2, 1, 4, 5)}])
    with pytest.raises(ValueError, match=r"sequences\[0\] must have at least one frame"):
        pad_sequences([torch.ones(0, 3)])
    with pytest.raises(ValueError, match="non-empty sequence"):
        pad_collate([])
