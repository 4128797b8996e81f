import dataclasses

import pytest
import torch

from convlstm import ConvGRU, ConvLSTM
from convlstm.accel import (
    FastSettings,
    apply_fast_settings,
    channels_last_sequence,
    choose_precision,
    compiled_gates_work,
    fast_settings,
)
from tests.accel.fake_cpu import pretend_cpu


@pytest.mark.parametrize(
    ("features", "bf16"), [(("amx_bf16", "avx512_bf16"), True), (("avx512_bf16",), True), (("avx2",), False)]
)
def test_cpu_gets_bfloat16_where_auto_precision_does(monkeypatch, features: tuple[str, ...], bf16: bool) -> None:
    pretend_cpu(monkeypatch, *features)
    settings = fast_settings("cpu")
    compiled = compiled_gates_work("cpu")[0]
    assert settings == FastSettings(compile_gates=compiled, autocast_dtype=torch.bfloat16 if bf16 else None)
    assert (choose_precision("cpu")[0] == "bf16-mixed") is bf16
    assert not (settings.cuda_graph or settings.channels_last)
    assert settings.float32_cell_state and settings.input_schedule == "auto"


def test_cuda_captures_only_static_shapes() -> None:
    static, dynamic = fast_settings("cuda"), fast_settings(torch.device("cuda"), static_shapes=False)
    assert static.cuda_graph and static.input_schedule == "fused"
    assert not dynamic.cuda_graph and dynamic.input_schedule == "auto"
    assert static.float32_cell_state


def test_settings_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="input_schedule"):
        FastSettings(input_schedule="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="autocast_dtype"):
        FastSettings(autocast_dtype=torch.int8)


def test_apply_sets_every_switch() -> None:
    model = torch.nn.Sequential(ConvLSTM(1, 4, num_layers=2), ConvGRU(4, 3))
    settings = FastSettings(input_schedule="fused", compile_gates=True, float32_cell_state=False)
    assert apply_fast_settings(model, settings) is model
    lstm, gru = model[0], model[1]
    assert lstm.input_schedule == "fused" and gru.input_schedule == "auto"  # GRU cells cannot fuse
    assert all(cell.compile_gates and not cell.float32_cell_state for cell in lstm.cells)
    assert not any(cell.float32_state for cell in gru.cells)
    apply_fast_settings(model, dataclasses.replace(settings, compile_gates=False, float32_cell_state=True))
    assert all(not cell.compile_gates and cell.float32_cell_state for cell in lstm.cells)
    assert all(cell.float32_state for cell in gru.cells)


def test_autocast_context() -> None:
    with FastSettings(autocast_dtype=torch.bfloat16).autocast("cpu"):
        assert torch.is_autocast_enabled("cpu")
    with FastSettings().autocast("cpu"):
        assert not torch.is_autocast_enabled("cpu")


@pytest.mark.parametrize("schedule", ["fused", "per_step", "batched"])
def test_channels_last_gives_the_same_numbers_and_keeps_the_layout(schedule: str) -> None:
    torch.manual_seed(0)
    plain = ConvLSTM(3, 5, 3, num_layers=2, input_schedule=schedule)  # type: ignore[arg-type]
    fast = ConvLSTM(3, 5, 3, num_layers=2)
    fast.load_state_dict(plain.state_dict())
    apply_fast_settings(fast, FastSettings(input_schedule=schedule, channels_last=True))  # type: ignore[arg-type]
    assert fast.cell(0).recurrent_conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 4, 3, 6, 7)
    x_last = channels_last_sequence(x).requires_grad_()
    assert torch.equal(x_last, x) and x_last[:, 1].is_contiguous(memory_format=torch.channels_last)
    x = x.requires_grad_()
    outputs, _ = fast.forward_layers(x_last)
    ref, _ = plain(x)
    torch.testing.assert_close(outputs[-1], ref, atol=1e-5, rtol=1e-5)
    # Layer outputs stay channels-last frame by frame, so the next layer reads them without conversion.
    assert all(out[:, 2].is_contiguous(memory_format=torch.channels_last) for out in outputs)
    grads = torch.autograd.grad(outputs[-1].square().sum(), [x_last, *fast.parameters()])
    ref_grads = torch.autograd.grad(ref.square().sum(), [x, *plain.parameters()])
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_channels_last_sequence_rejects_other_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        channels_last_sequence(torch.zeros(2, 3, 4, 5))
