import copy

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from convlstm import ConvLSTM
from convlstm.accel import capture_inference, capture_training_step, make_training_step
from convlstm.accel.cuda_graphs import restore_training_state, snapshot_training_state

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")


def _loss(model: ConvLSTM, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(model(x)[0].float(), y)


def _data(device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(2, 4, 2, 6, 6, generator=generator), torch.randn(2, 4, 3, 6, 6, generator=generator)
    return x.to(device), y.to(device)


def test_capture_on_the_cpu_raises_a_clear_error() -> None:
    model = ConvLSTM(2, 3)
    optimizer = torch.optim.Adam(model.parameters())
    with pytest.raises(ValueError, match="CUDA"):
        capture_training_step(model, optimizer, _loss, _data())
    with pytest.raises(ValueError, match="CUDA"):
        capture_inference(lambda x: model(x)[0], _data()[:1])


def test_training_step_equals_the_written_out_step() -> None:
    torch.manual_seed(0)
    model = ConvLSTM(2, 3, num_layers=2)
    other = copy.deepcopy(model)
    optimizer, other_optimizer = torch.optim.Adam(model.parameters(), 1e-2), torch.optim.Adam(other.parameters(), 1e-2)
    step = make_training_step(model, optimizer, _loss)
    x, y = _data()
    for _ in range(2):
        loss = step(x, y)
        other_optimizer.zero_grad()
        want = _loss(other, x, y)
        want.backward()
        other_optimizer.step()
        assert not loss.requires_grad
        torch.testing.assert_close(loss, want.detach())
    for p, q in zip(model.parameters(), other.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_step_without_optimizer_leaves_this_steps_gradients() -> None:
    torch.manual_seed(0)
    model = ConvLSTM(2, 3)
    step = make_training_step(model, None, _loss)
    x, y = _data()
    step(x, y)
    step(x, y)  # gradients are replaced, not accumulated
    want = torch.autograd.grad(_loss(model, x, y), list(model.parameters()))
    for p, g in zip(model.parameters(), want, strict=True):
        torch.testing.assert_close(p.grad, g)


def test_restore_undoes_warm_up_steps() -> None:
    """What capture does around its warm-up: parameters back, Adam state created meanwhile zeroed (a fresh state),
    and state that existed before back to its values."""
    torch.manual_seed(0)
    model = ConvLSTM(2, 3)
    optimizer = torch.optim.Adam(model.parameters(), 1e-2)
    step = make_training_step(model, optimizer, _loss)
    x, y = _data()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    saved = snapshot_training_state(model, optimizer)
    step(x, y)
    step(x, y)
    assert any(not torch.equal(p, before[name]) for name, p in model.named_parameters())
    restore_training_state(saved, model, optimizer)
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name])
    for state in optimizer.state.values():
        assert all(not torch.any(v) for v in state.values() if isinstance(v, torch.Tensor))
    step(x, y)  # now with existing state: it is put back, not zeroed
    kept = {k: v.clone() for k, v in optimizer.state[model.cell(0).bias].items()}
    saved = snapshot_training_state(model, optimizer)
    step(x, y)
    restore_training_state(saved, model, optimizer)
    for key, value in optimizer.state[model.cell(0).bias].items():
        assert torch.equal(value, kept[key]) and torch.any(value)


class _HostSyncs(TorchDispatchMode):
    """Records the operators that copy a tensor's value to the host (.item(), bool(tensor), nonzero)."""

    SYNCING = ("_local_scalar_dense", "is_nonzero", "item", "nonzero", "equal")

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func.__name__.split(".")[0] in self.SYNCING:
            self.seen.append(func.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("schedule", ["fused", "per_step", "batched"])
@pytest.mark.parametrize("bf16", [False, True])
def test_training_step_never_reads_a_tensor_value_on_the_host(schedule: str, bf16: bool) -> None:
    """A CUDA graph cannot hold a host synchronisation; this checks forward and backward for one on the CPU, operator
    by operator. (The optimizer is torch's: Adam reads its step count on the host unless capturable=True, which
    needs CUDA.)"""
    model = ConvLSTM(2, 3, num_layers=2, peephole=True, input_schedule=schedule)  # type: ignore[arg-type]
    step = make_training_step(model, None, _loss, autocast_dtype=torch.bfloat16 if bf16 else None)
    with _HostSyncs() as mode:
        step(*_data())
    assert mode.seen == []
    with _HostSyncs() as mode:
        float(model(_data()[0])[0].sum())  # the detector itself works
    assert mode.seen


# ----------------------------------------------------------------------------------------------------- CUDA only
@needs_cuda
def test_captured_training_steps_equal_eager_steps() -> None:
    torch.backends.cudnn.allow_tf32 = False
    try:
        torch.manual_seed(0)
        model = ConvLSTM(2, 3, num_layers=2, input_schedule="fused").cuda()
        other = copy.deepcopy(model)
        optimizer = torch.optim.Adam(model.parameters(), 1e-2, capturable=True)
        other_optimizer = torch.optim.Adam(other.parameters(), 1e-2)
        x, y = _data("cuda")
        step = capture_training_step(model, optimizer, _loss, (x, y))
        eager = make_training_step(other, other_optimizer, _loss)
        for scale in (1.0, 0.5, 2.0):
            loss = step(x * scale, y).clone()
            torch.testing.assert_close(loss, eager(x * scale, y), atol=1e-6, rtol=1e-5)
        for p, q in zip(model.parameters(), other.parameters(), strict=True):
            torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-5)
    finally:
        torch.backends.cudnn.allow_tf32 = True


@needs_cuda
def test_captured_inference_equals_eager_and_keeps_c_in_float32() -> None:
    model = ConvLSTM(2, 3, num_layers=2).cuda()
    x = _data("cuda")[0]
    graphed = capture_inference(lambda x: model(x), (x,), autocast_dtype=torch.bfloat16)
    out, state = graphed(x * 2)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        want, _ = model(x * 2)
    torch.testing.assert_close(out, want)
    assert state[-1][1].dtype == torch.float32
    with pytest.raises(ValueError, match="captured shape"):
        graphed(x[:1])


@needs_cuda
def test_capture_needs_a_capturable_optimizer() -> None:
    model = ConvLSTM(2, 3).cuda()
    with pytest.raises(ValueError, match="capturable=True"):
        capture_training_step(model, torch.optim.Adam(model.parameters()), _loss, _data("cuda"))
