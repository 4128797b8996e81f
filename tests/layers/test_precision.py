"""bfloat16 autocast with the LSTM cell state and the GRU state in float32, and the compiled gate arithmetic."""

import os

import pytest
import torch

import convlstm.layers.lstm_cell as lstm_cell_module
from convlstm import ConvGRU, ConvGRUCell, ConvLSTM, ConvLSTMCell
from convlstm.accel import BF16_TOLERANCE
from convlstm.layers import lstm_pointwise


def _bf16() -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16)


def _set(layer: ConvLSTM, *, float32_cell_state: bool | None = None, compile_gates: bool | None = None) -> None:
    for cell in layer.cells:
        if float32_cell_state is not None:
            cell.float32_cell_state = float32_cell_state
        if compile_gates is not None:
            cell.compile_gates = compile_gates


@pytest.mark.parametrize("schedule", ["per_step", "batched", "fused"])
def test_cell_state_stays_float32_under_bf16_autocast(schedule: str) -> None:
    layer = ConvLSTM(2, 4, num_layers=2, input_schedule=schedule)  # type: ignore[arg-type]
    x = torch.randn(2, 3, 2, 6, 6)
    with _bf16():
        out, state = layer(x)
        more, state = layer(x, state)  # a float32 c passed back in under autocast
    assert out.dtype == more.dtype == torch.bfloat16
    assert all(h.dtype == torch.bfloat16 and c.dtype == torch.float32 for h, c in state)
    _set(layer, float32_cell_state=False)
    with _bf16():
        _, state = layer(x)
    assert all(c.dtype == torch.bfloat16 for _, c in state)
    _, state = layer(x)  # outside autocast c has the parameters' dtype, whatever the switch
    assert all(c.dtype == torch.float32 for _, c in state)


def test_float32_cell_is_exact_arithmetic_on_the_rounded_gates() -> None:
    """With bfloat16 pre-activations, c equals float32 arithmetic on those same (rounded) values over 60 steps, and
    h is that result rounded once; keeping c in bfloat16 drifts far from it."""
    torch.manual_seed(0)
    fch = 8
    gates = [torch.randn(3, 4 * fch, 5, 5).bfloat16() for _ in range(60)]
    for g in gates:
        g[:, fch : 2 * fch] += 4.0  # forget gate near 1: c integrates its increments over many steps
    kwargs = {"peephole": None, "activation": torch.tanh, "recurrent_activation": torch.sigmoid}

    def run(widen: bool, float32_cell: bool) -> tuple[torch.Tensor, torch.Tensor]:
        c = h = None
        for g in gates:
            h, c = lstm_pointwise(g.float() if widen else g, c, float32_cell=float32_cell, **kwargs)
        assert h is not None and c is not None
        return h, c

    ref_h, ref_c = run(widen=True, float32_cell=False)
    h, c = run(widen=False, float32_cell=True)
    assert c.dtype == torch.float32 and h.dtype == torch.bfloat16
    torch.testing.assert_close(c, ref_c, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(h, ref_h.bfloat16(), atol=0, rtol=0)
    _, c_bf16 = run(widen=False, float32_cell=False)
    assert (c_bf16.float() - ref_c).abs().mean() > 1e-3  # the drift the float32 cell removes


def _errors(layer: ConvLSTM, x: torch.Tensor, weights: torch.Tensor, *, autocast: bool) -> tuple[torch.Tensor, ...]:
    """Outputs, last c and gradients (input, then parameters) of sum(output * weights)."""
    x = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out, state = layer(x)
    grads = torch.autograd.grad((out.float() * weights).sum(), [x, *layer.parameters()])
    return (out.float(), state[-1][1].float(), *grads)


@pytest.fixture(scope="module")
def stack() -> tuple[ConvLSTM, torch.Tensor, torch.Tensor]:
    """2 x 32 hidden, 5x5, 16 x 16 x 16 frames, 20 steps: OpenSTL's ConvLSTM-S scaled down in width and depth.
    A forget bias of 4 (f about 0.98) lets c grow over the sequence, where its precision matters most."""
    torch.manual_seed(0)
    layer = ConvLSTM(16, 32, 5, 2, forget_bias=4.0)
    return layer, torch.randn(2, 20, 16, 16, 16), torch.randn(2, 20, 32, 16, 16)


def test_bf16_agrees_with_float32_within_documented_tolerance(
    stack: tuple[ConvLSTM, torch.Tensor, torch.Tensor],
) -> None:
    """Measured (2026-11-28, this shape): output max |diff| 0.0098, gradient max |diff| / max |grad| 0.011; with the
    default forget bias 0.0014 / 0.012; 4 x 128 hidden (ConvLSTM-S), batch 2: 0.0004 / 0.016."""
    layer, x, weights = stack
    _set(layer, float32_cell_state=True)
    ref = _errors(layer, x, weights, autocast=False)
    got = _errors(layer, x, weights, autocast=True)
    assert (got[0] - ref[0]).abs().max() <= BF16_TOLERANCE["output"]
    for g, r in zip(got[2:], ref[2:], strict=True):
        assert (g - r).abs().max() <= BF16_TOLERANCE["gradient"] * r.abs().max()


def test_float32_cell_state_is_closer_to_float32_than_bf16_cell_state(
    stack: tuple[ConvLSTM, torch.Tensor, torch.Tensor],
) -> None:
    """Measured: mean |output diff| 0.00065 vs 0.00122, max |c diff| 0.023 vs 0.073."""
    layer, x, weights = stack
    ref = _errors(layer, x, weights, autocast=False)
    errors = {}
    for keep in (True, False):
        _set(layer, float32_cell_state=keep)
        got = _errors(layer, x, weights, autocast=True)
        errors[keep] = ((got[0] - ref[0]).abs().mean().item(), (got[1] - ref[1]).abs().max().item())
    _set(layer, float32_cell_state=True)
    assert errors[True][0] < 0.75 * errors[False][0]
    assert errors[True][1] < 0.5 * errors[False][1]


def test_compile_gates_switch_routes_through_the_compiled_function(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def recording(*args: object, **kwargs: object) -> object:
        calls.append(kwargs["float32_cell"])
        return lstm_pointwise(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(lstm_cell_module, "compiled_lstm_pointwise", lambda: recording)
    cell = ConvLSTMCell(1, 2)
    x = torch.randn(1, 1, 4, 4)
    cell(x)
    assert calls == []
    cell.compile_gates = True
    cell(x)
    with _bf16():
        cell(x)
    assert calls == [False, True]


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("ATEN_CPU_CAPABILITY") == "default",
    reason="torch.compile's CPU code (inductor) does not build with ATEN_CPU_CAPABILITY=default (at::vec undeclared)",
)
def test_compiled_gates_equal_eager_gates() -> None:
    """torch.compile'd gate arithmetic: float32 outputs and gradients equal eager to 1e-5; under bfloat16 autocast c
    stays float32. About 25 s with a cold inductor cache on 2 CPU cores, hence slow."""
    torch.manual_seed(0)
    layer = ConvLSTM(2, 4, 3, 2, peephole=True)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0, 0.3)
    x = torch.randn(2, 4, 2, 6, 6, requires_grad=True)
    out, _ = layer(x)
    grads = torch.autograd.grad(out.square().sum(), [x, *layer.parameters()])
    _set(layer, compile_gates=True)
    compiled, _ = layer(x)
    compiled_grads = torch.autograd.grad(compiled.square().sum(), [x, *layer.parameters()])
    torch.testing.assert_close(compiled, out, atol=1e-5, rtol=1e-5)
    for got, want in zip(compiled_grads, grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    with torch.no_grad(), _bf16():
        compiled_bf16, state = layer(x)
    _set(layer, compile_gates=False)
    with torch.no_grad(), _bf16():
        eager_bf16, _ = layer(x)
    assert state[-1][1].dtype == torch.float32
    torch.testing.assert_close(compiled_bf16.float(), eager_bf16.float(), atol=1e-2, rtol=0)


@pytest.mark.parametrize(
    ("layer_class", "schedule", "kwargs"),
    [
        (ConvLSTM, "fused", {}),
        (ConvLSTM, "per_step", {}),
        (ConvLSTM, "batched", {}),
        (ConvGRU, "per_step", {}),
        (ConvGRU, "batched", {}),
        (ConvGRU, "per_step", {"reset_after": False}),  # its recurrent weight is used in two slices
    ],
)
@pytest.mark.parametrize("cache_enabled", [True, False])
def test_every_schedule_casts_each_weight_once_per_call_under_autocast(
    layer_class: type[ConvLSTM] | type[ConvGRU], schedule: str, kwargs: dict[str, object], cache_enabled: bool
) -> None:
    """Autocast caches casts of parameters only, and nothing with its cache off (as under CUDA-graph capture): a
    weight cast inside the step would be cast, and saved for the backward pass, once per step. Each weight the
    layer uses (input, recurrent, or the two side by side) must be saved once, whatever the cache does, and the
    outputs must not depend on the cache."""
    torch.manual_seed(0)
    layer = layer_class(3, 4, 3, input_schedule=schedule, **kwargs)  # type: ignore[arg-type]
    cell = layer.cells[0]
    shapes = {tuple(cell.input_conv.weight.shape), tuple(cell.recurrent_conv.weight.shape)}
    if schedule == "fused":
        shapes.add(tuple(cell.fused_weight().shape))
    storages: dict[tuple[int, ...], set[int]] = {shape: set() for shape in shapes}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if tuple(t.shape) in storages and t.dtype == torch.bfloat16:
            storages[tuple(t.shape)].add(t.untyped_storage().data_ptr())
        return t

    x = torch.randn(2, 6, 3, 5, 5)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=cache_enabled)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast:
        out, _ = layer(x)
    assert all(len(saved) <= 1 for saved in storages.values()), {k: len(v) for k, v in storages.items()}
    assert sum(len(saved) for saved in storages.values()) >= 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reference, _ = layer(x)
    assert torch.equal(out, reference)


# ------------------------------------------------------------------------------------------------ ConvGRU state
def _set_gru(layer: ConvGRU, float32_state: bool) -> None:
    for cell in layer.cells:
        cell.float32_state = float32_state


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"reset_after": False}, {"bias": False}, {"norm": "group", "norm_groups": 2}, {"norm": "layer"}],
)
def test_gru_state_is_float32_under_bf16_autocast(kwargs: dict[str, object]) -> None:
    """Whatever float32 biases or norms promote on the way, h is float32 with the switch and bfloat16 without."""
    layer = ConvGRU(2, 4, num_layers=2, bidirectional=True, **kwargs)  # type: ignore[arg-type]
    x = torch.randn(2, 3, 2, 6, 6)
    with _bf16():
        out, state = layer(x)
        more, state = layer(x, state)  # a float32 h passed back in under autocast
    assert out.dtype == more.dtype == torch.float32
    assert all(h.dtype == torch.float32 for h in state)
    _set_gru(layer, False)
    with _bf16():
        out, state = layer(x)
        more, state = layer(x, state)
    assert out.dtype == more.dtype == torch.bfloat16
    assert all(h.dtype == torch.bfloat16 for h in state)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_gru_state_switch_changes_nothing_outside_autocast(dtype: torch.dtype) -> None:
    """Outside autocast h has the parameters' dtype (bfloat16 parameters are not widened) and the switch does not
    change a bit, also with checkpointing and a cell without input (whose step starts from the biases)."""
    torch.manual_seed(0)
    layer = ConvGRU(2, 4, num_layers=2, checkpoint_every=2).to(dtype)
    silent = ConvGRUCell(0, 3, reset_after=False, gate_bias=1.0).to(dtype)
    x = torch.randn(2, 5, 2, 6, 6, dtype=dtype, requires_grad=True)
    h0 = torch.randn(2, 3, 6, 6, dtype=dtype)
    results = []
    for keep in (True, False):
        _set_gru(layer, keep)
        silent.float32_state = keep
        out, state = layer(x)
        grads = torch.autograd.grad(out.float().square().sum(), [x, *layer.parameters()])
        results.append((out, *state, *grads, silent(None, h0)))
    assert all(t.dtype == dtype for t in results[0][:3])
    assert results[0][-1].dtype == dtype
    for on, off in zip(*results, strict=True):
        assert torch.equal(on, off)


def test_gru_float32_state_is_exact_arithmetic_on_the_rounded_pre_activations() -> None:
    """Under autocast, one step equals the GRU formulas evaluated in float32 on the bfloat16 convolution outputs."""
    torch.manual_seed(0)
    fch = 4
    cell = ConvGRUCell(3, fch)
    with torch.no_grad():
        for p in cell.parameters():
            p.normal_(0, 0.5)
    assert cell.recurrent_bias is not None
    x, h = torch.randn(2, 3, 5, 5), torch.randn(2, fch, 5, 5)
    with _bf16():
        x_gates = cell.input_gates(x)
        recurrent = cell.recurrent_gates(h, None)
        got = cell.step(x_gates, h)
    assert x_gates is not None and x_gates.dtype == recurrent.dtype == torch.bfloat16
    # Independent of the cell's code path: torch.nn.GRUCell's equations on the widened pre-activations.
    xg = x_gates.float()
    hg = recurrent.float() + cell.recurrent_bias.detach().view(1, -1, 1, 1)
    r = torch.sigmoid(xg[:, :fch] + hg[:, :fch])
    z = torch.sigmoid(xg[:, fch : 2 * fch] + hg[:, fch : 2 * fch])
    n = torch.tanh(xg[:, 2 * fch :] + r * hg[:, 2 * fch :])
    want = (1 - z) * n + z * h
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_float32_state_is_closer_to_float32_than_bf16_state(reset_after: bool) -> None:
    """2 x 8 hidden, 3x3, 12 x 12 x 4 frames, 40 steps; a gate bias of 2 (z about 0.88) makes h integrate over
    many steps, where its precision matters most. Measured (seeds 0-3), mean / max |output diff| from float32:
    reset_after=True 0.00015-0.00017 / 0.0010-0.0012 with h in float32 against 0.00021-0.00025 / 0.0023-0.0029 with
    h in bfloat16; reset_after=False (whose arithmetic is then all bfloat16) the same against 0.00065-0.00070 /
    0.0045-0.0053. The bound of 0.005 on the float32-state output leaves about 4x room."""
    torch.manual_seed(0)
    layer = ConvGRU(4, 8, 3, 2, reset_after=reset_after, gate_bias=2.0)
    x = torch.randn(2, 40, 4, 12, 12)
    errors = {}
    with torch.no_grad():
        ref, _ = layer(x)
        for keep in (True, False):
            _set_gru(layer, keep)
            with _bf16():
                out, _ = layer(x)
            diff = (out.float() - ref).abs()
            errors[keep] = (diff.mean().item(), diff.max().item())
    assert errors[True][0] < 0.8 * errors[False][0]
    assert errors[True][1] < 0.6 * errors[False][1]
    assert errors[True][1] <= 0.005 <= BF16_TOLERANCE["output"]
