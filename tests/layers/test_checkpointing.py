"""Activation checkpointing in the sequence layers (checkpoint_every): same numbers as the plain layer, less memory."""

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from convlstm import ConvGRU, ConvLSTM
from tests.layers.reference import randomize_
from tests.tolerances import gradient_tolerance


def _close(got: Tensor, want: Tensor) -> None:
    """Equal to float32 rounding of sums in another order, relative to the tensor's largest magnitude: the batched
    schedule sums a chunk's input-convolution gradient separately, in another order than one call does."""
    torch.testing.assert_close(got, want, **gradient_tolerance(want))


def _flat_state(state: list[Any]) -> list[Tensor]:
    return [t for entry in state for t in (entry if isinstance(entry, tuple | list) else (entry,))]


def _run(layer: nn.Module, x: Tensor, seed: int) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Outputs, final state and the gradients of a random projection of both w.r.t. x and every parameter."""
    torch.manual_seed(seed)  # the dropout masks of this call
    out, state = layer(x)
    flat = _flat_state(state)
    torch.manual_seed(1234)  # the same projection for both layers
    loss = (out * torch.randn_like(out)).sum() + sum((s * torch.randn_like(s)).sum() for s in flat)
    grads = torch.autograd.grad(loss, [x, *layer.parameters()])
    return out, flat, list(grads)


def _twins(make: Callable[..., nn.Module], every: int) -> tuple[nn.Module, nn.Module]:
    plain = make()
    randomize_(plain, scale=0.3)
    checkpointed = make(checkpoint_every=every)
    checkpointed.load_state_dict(plain.state_dict())
    return plain, checkpointed


def _assert_same(plain: nn.Module, checkpointed: nn.Module, x: Tensor, *, seed: int = 0) -> None:
    out, state, grads = _run(plain, x, seed)
    c_out, c_state, c_grads = _run(checkpointed, x, seed)
    _close(c_out, out)
    for got, want in zip(c_state, state, strict=True):
        _close(got, want)
    for got, want in zip(c_grads, grads, strict=True):
        _close(got, want)


LSTM_CASES = {
    "peephole": {"peephole": True},
    "bidirectional": {"bidirectional": True, "peephole": True},
    "reverse": {"reverse": True},
    "layer_norm": {"norm": "layer"},
}


@pytest.mark.parametrize("schedule", ["per_step", "batched", "fused"])
@pytest.mark.parametrize("case", sorted(LSTM_CASES))
def test_lstm_checkpointed_equals_plain(case: str, schedule: str) -> None:
    """Outputs, final states and gradients (input and parameters) equal the plain layer to 1e-6 in float32."""
    torch.manual_seed(0)

    def make(**extra: Any) -> nn.Module:
        return ConvLSTM(2, [4, 3], 3, num_layers=2, input_schedule=schedule, **LSTM_CASES[case], **extra)  # type: ignore[arg-type]

    plain, checkpointed = _twins(make, every=3)
    _assert_same(plain, checkpointed, torch.randn(2, 8, 2, 5, 6, requires_grad=True))  # chunks of 3, 3 and 2


def test_lstm_without_input_checkpointed_equals_plain() -> None:
    """A stack driven by its state alone (in_channels=0): the gradient reaches the initial state through chunks."""
    torch.manual_seed(0)
    plain, checkpointed = _twins(lambda **kw: ConvLSTM(0, [4, 3], 3, num_layers=2, **kw), every=2)
    x = torch.zeros(2, 5, 0, 5, 6)
    start = [tuple(torch.randn(2, f, 5, 6, requires_grad=True) for _ in range(2)) for f in (4, 3)]
    leaves = [t for pair in start for t in pair]
    results = []
    for layer in (plain, checkpointed):
        out, _ = layer(x, start)
        results.append((out, torch.autograd.grad(out.square().sum(), [*leaves, *layer.parameters()])))
    _close(results[1][0], results[0][0])
    for got, want in zip(results[1][1], results[0][1], strict=True):
        _close(got, want)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("every", [1, 4, 50])
def test_gru_checkpointed_equals_plain(bidirectional: bool, every: int) -> None:
    torch.manual_seed(0)

    def make(**extra: Any) -> nn.Module:
        return ConvGRU(2, 4, 3, num_layers=2, bidirectional=bidirectional, **extra)

    plain, checkpointed = _twins(make, every=every)
    _assert_same(plain, checkpointed, torch.randn(2, 7, 2, 5, 5, requires_grad=True))


@pytest.mark.parametrize("layer_type", [ConvLSTM, ConvGRU])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_dropout_masks_are_reused_in_the_recomputation(layer_type: type, bidirectional: bool) -> None:
    """In training, Keras-style masks and the dropout between layers: gradients still equal the plain layer's.

    Without fixed masks the two layers would differ outright; the first check shows the masks matter here.
    """
    torch.manual_seed(0)

    def make(**extra: Any) -> nn.Module:
        return layer_type(
            2,
            4,
            3,
            num_layers=2,
            bidirectional=bidirectional,
            dropout=0.3,
            input_dropout=0.4,
            recurrent_dropout=0.4,
            **extra,
        ).train()

    plain, checkpointed = _twins(make, every=3)
    x = torch.randn(2, 7, 2, 5, 5, requires_grad=True)
    torch.manual_seed(5)
    other_masks, _ = plain(x)
    assert not torch.allclose(other_masks, _run(plain, x, seed=0)[0], atol=1e-3)
    _assert_same(plain, checkpointed, x, seed=0)


def test_chunked_calls_with_state_and_no_grad_agree() -> None:
    """A call continuing from a state, and a call without autograd, give the plain layer's numbers."""
    torch.manual_seed(0)
    plain, checkpointed = _twins(lambda **kw: ConvLSTM(1, 3, 3, peephole=True, **kw), every=2)
    x = torch.randn(1, 5, 1, 4, 4)
    with torch.no_grad():
        _, start = plain(x)
    more = torch.randn(1, 6, 1, 4, 4, requires_grad=True)
    out, _ = plain(more, start)
    c_out, _ = checkpointed(more, start)
    _close(c_out, out)
    g = torch.autograd.grad(out.sum(), [more, *plain.parameters()])
    cg = torch.autograd.grad(c_out.sum(), [more, *checkpointed.parameters()])
    for got, want in zip(cg, g, strict=True):
        _close(got, want)
    with torch.no_grad():
        _close(checkpointed(more, start)[0], out)


def _saved_bytes(layer: nn.Module, x: Tensor) -> int:
    """Bytes of the distinct tensors autograd keeps for the backward pass of one call."""
    storages: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out, _ = layer(x)
    out.sum().backward()
    return sum(storages.values())


def test_checkpointing_keeps_less_for_the_backward_pass() -> None:
    """The point of it: over 40 steps, chunks of 10 keep several times fewer bytes than all activations."""
    torch.manual_seed(0)
    plain, checkpointed = _twins(lambda **kw: ConvLSTM(2, 8, 3, num_layers=2, **kw), every=10)
    x = torch.randn(2, 40, 2, 8, 8)
    plain_bytes, checkpointed_bytes = _saved_bytes(plain, x), _saved_bytes(checkpointed, x)
    assert checkpointed_bytes * 3 < plain_bytes, (checkpointed_bytes, plain_bytes)


@pytest.mark.parametrize("every", [0, -2, 1.5, True])
def test_bad_checkpoint_every_is_refused(every: Any) -> None:
    with pytest.raises(ValueError, match="checkpoint_every"):
        ConvLSTM(1, 2, checkpoint_every=every)
    with pytest.raises(ValueError, match="checkpoint_every"):
        ConvGRU(1, 2, checkpoint_every=every)
