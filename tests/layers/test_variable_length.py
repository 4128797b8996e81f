"""Variable-length sequences in ConvLSTM / ConvGRU: a padded batch with ``lengths`` (or a (B, T) ``mask``) gives
each sequence what it gets alone, for every spatial rank, direction and input schedule."""

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from convlstm import ConvGRU, ConvLSTM
from tests.layers.reference import randomize_

LENGTHS = [5, 2, 4]
STEPS = max(LENGTHS)
SPATIAL = {1: (7,), 2: (6, 5), 3: (4, 3, 5)}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # Many tiny convolutions: intra-op threads only add overhead on a shared CI machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _close(got: Tensor, want: Tensor) -> None:
    """Equal to 1e-5 of the tensor's largest magnitude: float32 keeps about 7 digits, and a batch of three sums a
    weight's gradient over its sequences in another order than three separate calls do (a few ulps per sum)."""
    torch.testing.assert_close(got, want, atol=1e-5 * max(1.0, want.abs().max().item()), rtol=0.0)


def _flat(state: list[Any]) -> list[Tensor]:
    return [t for entry in state for t in (entry if isinstance(entry, tuple | list) else (entry,))]


def _make(kind: str, dims: int, direction: str, schedule: str) -> nn.Module:
    cls = ConvLSTM if kind == "lstm" else ConvGRU
    layer = cls(
        2,
        [3, 4],
        kernel_size=3,
        num_layers=2,
        spatial_dims=dims,
        bidirectional=direction == "bidirectional",
        reverse=direction == "reverse",
        input_schedule=schedule,  # type: ignore[arg-type]
    )
    randomize_(layer, scale=0.3)
    return layer


def _loss(out: Tensor, state: list[Any], lengths: list[int], seed: int) -> Tensor:
    """A random projection of the valid outputs and the final state (the same for the batch and the singles)."""
    generator = torch.Generator().manual_seed(seed)
    total = out.new_zeros(())
    for b, length in enumerate(lengths):
        valid = out[b, :length]
        total = total + (valid * torch.randn(valid.shape, generator=generator)).sum()
    for s in _flat(state):
        for b in range(len(lengths)):
            total = total + (s[b] * torch.randn(s[b].shape, generator=generator)).sum()
    return total


CASES = [
    (kind, dims, direction, schedule)
    for kind in ("lstm", "gru")
    for dims in (1, 2, 3)
    for direction in ("forward", "reverse", "bidirectional")
    for schedule in (("batched", "per_step", "fused") if kind == "lstm" else ("batched", "per_step"))
    # Every spatial rank with every direction; every schedule in 2D.
    if dims == 2 or schedule == "per_step"
]


@pytest.mark.parametrize(("kind", "dims", "direction", "schedule"), CASES, ids=["-".join(map(str, c)) for c in CASES])
def test_padded_batch_equals_each_sequence_alone(kind: str, dims: int, direction: str, schedule: str) -> None:
    torch.manual_seed(0)
    layer = _make(kind, dims, direction, schedule)
    x = torch.randn(len(LENGTHS), STEPS, 2, *SPATIAL[dims], requires_grad=True)
    out, state = layer(x, lengths=torch.tensor(LENGTHS))
    params = list(layer.parameters())
    grads = torch.autograd.grad(_loss(out, state, LENGTHS, seed=1), [x, *params])

    want_param_grads = [torch.zeros_like(p) for p in params]
    for b, length in enumerate(LENGTHS):
        alone_x = x.detach()[b : b + 1, :length].clone().requires_grad_(True)
        alone_out, alone_state = layer(alone_x)
        _close(out[b, :length], alone_out[0])
        for got, want in zip(_flat(state), _flat(alone_state), strict=True):
            _close(got[b], want[0])
        # The same projection as the batch's loss, with the other sequences' terms left out.
        projection = _single_projection(out, state, b, seed=1)
        alone_loss = (alone_out[0] * projection[0]).sum() + sum(
            (s[0] * p).sum() for s, p in zip(_flat(alone_state), projection[1:], strict=True)
        )
        alone_grads = torch.autograd.grad(alone_loss, [alone_x, *params])
        _close(grads[0][b, :length], alone_grads[0][0])
        assert torch.all(grads[0][b, length:] == 0), "padded frames must not receive gradient"
        for total, g in zip(want_param_grads, alone_grads[1:], strict=True):
            total += g
    for got, want in zip(grads[1:], want_param_grads, strict=True):
        _close(got, want)


def _single_projection(out: Tensor, state: list[Any], index: int, seed: int) -> list[Tensor]:
    """The random weights that :func:`_loss` gives sequence ``index``: its valid outputs, then each state tensor."""
    generator = torch.Generator().manual_seed(seed)
    weights: list[Tensor] = []
    for b, length in enumerate(LENGTHS):
        w = torch.randn(out[b, :length].shape, generator=generator)
        if b == index:
            weights.append(w)
    for s in _flat(state):
        for b in range(len(LENGTHS)):
            w = torch.randn(s[b].shape, generator=generator)
            if b == index:
                weights.append(w)
    return weights


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_outputs_on_padded_steps_follow_keras(kind: str) -> None:
    """Forward: a padded step repeats the last valid output; reverse: padded steps come first and are zero."""
    torch.manual_seed(0)
    layer = _make(kind, 2, "bidirectional", "per_step")
    x = torch.randn(len(LENGTHS), STEPS, 2, 6, 5)
    with torch.no_grad():
        out, _ = layer(x, lengths=torch.tensor(LENGTHS))
    forward, backward = out.split(4, dim=2)
    for b, length in enumerate(LENGTHS):
        for t in range(length, STEPS):
            torch.testing.assert_close(forward[b, t], forward[b, length - 1], rtol=0, atol=0)
            assert torch.all(backward[b, t] == 0)


def test_mask_with_gaps_carries_the_state_over_masked_steps() -> None:
    """A Keras-style mask may have gaps: the final state is that of the sequence with the masked steps removed."""
    torch.manual_seed(0)
    layer = _make("lstm", 2, "forward", "per_step")
    x = torch.randn(1, 6, 2, 6, 5)
    mask = torch.tensor([[True, False, True, True, False, True]])
    with torch.no_grad():
        out, state = layer(x, mask=mask)
        kept_out, kept_state = layer(x[:, mask[0]])
    for got, want in zip(_flat(state), _flat(kept_state), strict=True):
        _close(got, want)
    _close(out[:, mask[0]], kept_out)
    torch.testing.assert_close(out[:, 1], out[:, 0], rtol=0, atol=0)


def test_masked_first_steps_output_zero_but_keep_the_initial_state() -> None:
    torch.manual_seed(0)
    layer = _make("gru", 2, "forward", "per_step")
    x = torch.randn(1, 4, 2, 6, 5)
    h0 = [torch.randn(1, 3, 6, 5), torch.randn(1, 4, 6, 5)]
    mask = torch.tensor([[False, False, True, True]])
    with torch.no_grad():
        out, state = layer(x, h0, mask=mask)
        alone_out, alone_state = layer(x[:, 2:], h0)
    assert torch.all(out[:, :2] == 0)
    _close(out[:, 2:], alone_out)
    for got, want in zip(state, alone_state, strict=True):
        _close(got, want)


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_checkpointed_layer_with_lengths_equals_plain(direction: str) -> None:
    torch.manual_seed(0)
    plain = _make("lstm", 2, direction, "per_step")
    checkpointed = _make("lstm", 2, direction, "per_step")
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.checkpoint_every = 2  # type: ignore[assignment]
    x = torch.randn(len(LENGTHS), STEPS, 2, 6, 5, requires_grad=True)
    lengths = torch.tensor(LENGTHS)
    results = []
    for layer in (plain, checkpointed):
        out, state = layer(x, lengths=lengths)
        loss = _loss(out, state, LENGTHS, seed=3)
        results.append([out, *_flat(state), *torch.autograd.grad(loss, [x, *layer.parameters()])])
    for got, want in zip(results[1], results[0], strict=True):
        _close(got, want)


def test_full_lengths_run_the_unmasked_path_bit_for_bit() -> None:
    torch.manual_seed(0)
    layer = _make("lstm", 2, "bidirectional", "fused")
    x = torch.randn(2, 4, 2, 6, 5)
    with torch.no_grad():
        out, state = layer(x)
        full_out, full_state = layer(x, lengths=torch.tensor([4, 4]))
        mask_out, _ = layer(x, mask=torch.ones(2, 4, dtype=torch.bool))
    assert torch.equal(out, full_out) and torch.equal(out, mask_out)
    for got, want in zip(_flat(full_state), _flat(state), strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lengths": torch.tensor([3, 4]), "mask": torch.ones(2, 4, dtype=torch.bool)}, "at most one"),
        ({"lengths": torch.tensor([3])}, "lengths must be an integer tensor of shape"),
        ({"lengths": torch.tensor([3.0, 4.0])}, "lengths must be an integer tensor"),
        ({"lengths": torch.tensor([3, 5])}, r"lengths must lie in \[0, T=4\]"),
        ({"lengths": torch.tensor([-1, 2])}, r"lengths must lie in \[0, T=4\]"),
        ({"mask": torch.ones(2, 3, dtype=torch.bool)}, r"mask must be a bool tensor of shape \(B, T\)=\(2, 4\)"),
        ({"mask": torch.ones(2, 4)}, "mask must be a bool tensor"),
    ],
)
def test_bad_lengths_or_mask_are_named(kwargs: dict[str, Any], message: str) -> None:
    layer = ConvLSTM(2, 3)
    with pytest.raises(ValueError, match=message):
        layer(torch.randn(2, 4, 2, 5, 5), **kwargs)
