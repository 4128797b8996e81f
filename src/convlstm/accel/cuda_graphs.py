"""Whole training and inference steps captured in CUDA graphs, for static shapes.

At small batch a ConvLSTM step is bound by kernel launches (hundreds of small kernels per sequence); replaying a
captured graph launches them all at once (benchmarks/gpu.py measures the gain). The step
must not synchronise with the host (no ``.item()``, no Python branch on a tensor's value): capture fails if it does.

Usage:

```python
optimizer = torch.optim.Adam(model.parameters(), lr=5e-4, capturable=True)
step = capture_training_step(model, optimizer, lambda m, x, y: F.mse_loss(m(x)[0], y), (x, y),
                             autocast_dtype=torch.bfloat16)
for x, y in loader:               # every batch with the captured shapes and dtypes
    loss = step(x, y)             # the same tensor every call, overwritten: clone it to keep it
```

A learning-rate schedule needs the learning rate as a CUDA tensor (``lr=torch.tensor(5e-4, device="cuda")``),
which the scheduler updates in place; a Python float is baked into the graph at capture.
"""

import contextlib
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from convlstm.utils.checks import check_int

logger = logging.getLogger(__name__)

#: loss_fn(model, *inputs) -> scalar loss tensor (float32 under autocast is best for the backward pass).
LossFn = Callable[..., Tensor]


class CapturedStep:
    """A captured CUDA graph with its static input and output tensors.

    Calling it copies the given inputs into the static inputs (skipped for a static input itself), replays the
    graph and returns the static outputs, whose values the next call overwrites. Nothing waits for the GPU.
    """

    def __init__(self, graph: "torch.cuda.CUDAGraph", static_inputs: tuple[Tensor, ...], static_outputs: Any) -> None:
        self.graph = graph
        self.static_inputs = static_inputs
        self.static_outputs = static_outputs

    def __call__(self, *inputs: Tensor) -> Any:
        if len(inputs) != len(self.static_inputs):
            raise ValueError(f"the step was captured with {len(self.static_inputs)} inputs, got {len(inputs)}")
        for index, (new, static) in enumerate(zip(inputs, self.static_inputs, strict=True)):
            if not isinstance(new, Tensor) or new.shape != static.shape or new.dtype != static.dtype:
                got = f"{tuple(new.shape)} {new.dtype}" if isinstance(new, Tensor) else type(new).__name__
                raise ValueError(
                    f"inputs[{index}] must have the captured shape {tuple(static.shape)} and dtype {static.dtype}, "
                    f"got {got}"
                )
            if new is not static:
                static.copy_(new, non_blocking=True)
        return self.replay()

    def replay(self) -> Any:
        """Replays the graph on whatever the static inputs hold; returns the static outputs."""
        self.graph.replay()
        return self.static_outputs


def make_training_step(
    model: nn.Module,
    optimizer: Optimizer | None,
    loss_fn: LossFn,
    *,
    autocast_dtype: torch.dtype | None = None,
    cache_autocast: bool = True,
) -> Callable[..., Tensor]:
    """The eager training step that [`capture_training_step`][convlstm.accel.capture_training_step] captures: zero the
    gradients, loss under autocast, backward, optimizer step (none when ``optimizer`` is None: the gradients are left in
    ``.grad``).

    Returns:
        step(*inputs) -> the detached loss. Runs on any device.
    """
    device_type = _parameter_device(model, "model").type

    def step(*inputs: Tensor) -> Tensor:
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        model.zero_grad(set_to_none=True)
        with _autocast(device_type, autocast_dtype, cache_autocast):
            loss = loss_fn(model, *inputs)
        loss.backward()
        if optimizer is not None:
            optimizer.step()
        return loss.detach()

    return step


def capture_training_step(
    model: nn.Module,
    optimizer: Optimizer | None,
    loss_fn: LossFn,
    example_inputs: Sequence[Tensor],
    *,
    autocast_dtype: torch.dtype | None = None,
    warmup_steps: int = 3,
) -> CapturedStep:
    """Captures forward, backward and optimizer step in one CUDA graph.

    ``warmup_steps`` eager steps run first on a side stream (cuDNN picks its algorithms, torch.compile compiles,
    the optimizer allocates its state); then the parameters, buffers and optimizer state are put back as they were
    (optimizer state that the warm-up created is zeroed, which is a fresh state for Adam and AdamW), so the first
    replay is the first real step. The gradients live in the graph's memory and are overwritten by every replay.

    Args:
        model: on a CUDA device.
        optimizer: over the model's parameters, created with ``capturable=True`` where it has that option (Adam,
            AdamW, ...); None captures forward and backward only.
        loss_fn: ``loss_fn(model, *inputs)`` -> scalar loss.
        example_inputs: CUDA tensors with the shapes and dtypes of every later call (their values are copied).
        autocast_dtype: run the forward pass under torch.autocast with this dtype (None: no autocast).
        warmup_steps: eager steps before capture, >= 1.

    Returns:
        A [`CapturedStep`][convlstm.accel.CapturedStep]: ``step(*inputs)`` returns the loss tensor (static, overwritten
        every call).

    Raises:
        ValueError: not on CUDA, an optimizer without capturable=True, or warmup_steps < 1.
    """
    device = _check_cuda("capture_training_step", model, example_inputs)
    check_int("warmup_steps", warmup_steps)
    if optimizer is not None:
        for group in optimizer.param_groups:
            if "capturable" in group and not group["capturable"]:
                raise ValueError(
                    f"capture_training_step needs an optimizer created with capturable=True, e.g. "
                    f"torch.optim.{type(optimizer).__name__}(params, ..., capturable=True); got capturable=False"
                )
    static_inputs = tuple(x.detach().clone() for x in example_inputs)
    step = make_training_step(model, optimizer, loss_fn, autocast_dtype=autocast_dtype, cache_autocast=False)
    saved = snapshot_training_state(model, optimizer)
    _warm_up(step, static_inputs, warmup_steps, device)
    restore_training_state(saved, model, optimizer)
    # Gradients set to None here are allocated inside the capture, from the graph's memory pool.
    model.zero_grad(set_to_none=True)
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        loss = step(*static_inputs)
    logger.info("captured a training step on %s (inputs %s)", device, [tuple(x.shape) for x in static_inputs])
    return CapturedStep(graph, static_inputs, loss)


def capture_inference(
    fn: Callable[..., Any],
    example_inputs: Sequence[Tensor],
    *,
    autocast_dtype: torch.dtype | None = None,
    warmup_steps: int = 2,
) -> CapturedStep:
    """Captures ``fn(*inputs)`` under torch.no_grad (e.g. ``lambda x: model(x)[0]``) in one CUDA graph.

    Args:
        fn: the forward computation; a module's parameters must be on CUDA.
        example_inputs: CUDA tensors with the shapes and dtypes of every later call.
        autocast_dtype: run under torch.autocast with this dtype (None: no autocast).
        warmup_steps: eager calls before capture, >= 1.

    Returns:
        A [`CapturedStep`][convlstm.accel.CapturedStep] returning fn's outputs (static tensors, overwritten by every
        call).

    Raises:
        ValueError: not on CUDA, or warmup_steps < 1.
    """
    device = _check_cuda("capture_inference", fn if isinstance(fn, nn.Module) else None, example_inputs)
    check_int("warmup_steps", warmup_steps)
    static_inputs = tuple(x.detach().clone() for x in example_inputs)

    def forward(*inputs: Tensor) -> Any:
        with torch.no_grad(), _autocast(device.type, autocast_dtype, False):
            return fn(*inputs)

    _warm_up(forward, static_inputs, warmup_steps, device)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = forward(*static_inputs)
    return CapturedStep(graph, static_inputs, outputs)


# ----------------------------------------------------------------------------------------------------- warm-up
def snapshot_training_state(model: nn.Module, optimizer: Optimizer | None) -> dict[str, Any]:
    """Copies (on the CPU, so that they do not add to the device's peak memory) of the model's parameters and
    buffers and of the optimizer's existing state, for `restore_training_state`."""
    state: dict[int, dict[str, Any]] = {}
    if optimizer is not None:
        for param, entries in optimizer.state.items():
            state[id(param)] = {
                k: v.detach().to("cpu", copy=True) if isinstance(v, Tensor) else v for k, v in entries.items()
            }
    return {
        "model": {name: t.detach().to("cpu", copy=True) for name, t in model.state_dict(keep_vars=True).items()},
        "optimizer": state,
    }


def restore_training_state(saved: dict[str, Any], model: nn.Module, optimizer: Optimizer | None) -> None:
    """Puts back what `snapshot_training_state` saved, in place (the tensors keep their memory); optimizer
    state created since is zeroed."""
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=True).items():
            tensor.copy_(saved["model"][name])
        if optimizer is None:
            return
        for param, entries in optimizer.state.items():
            before = saved["optimizer"].get(id(param))
            for key, value in entries.items():
                if not isinstance(value, Tensor):
                    if before is not None and key in before:
                        entries[key] = before[key]
                elif before is not None and key in before:
                    value.copy_(before[key])
                else:
                    value.zero_()


def _warm_up(fn: Callable[..., Any], inputs: tuple[Tensor, ...], steps: int, device: torch.device) -> None:
    """Runs ``fn`` ``steps`` times on a side stream, as capture requires (no work pending on the capture stream)."""
    stream = torch.cuda.Stream(device=device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(steps):
            fn(*inputs)
    torch.cuda.current_stream(device).wait_stream(stream)
    torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------------------------------- checks
def _autocast(device_type: str, dtype: torch.dtype | None, cache_enabled: bool) -> AbstractContextManager[Any]:
    # Graph capture needs the autocast weight cache off: cached casts would be made once, outside the graph.
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=dtype, cache_enabled=cache_enabled)


def _parameter_device(module: nn.Module, name: str) -> torch.device:
    first = next(module.parameters(), None)
    if first is None:
        raise ValueError(f"{name} has no parameters to train")
    return first.device


def _check_cuda(what: str, module: nn.Module | None, inputs: Sequence[Tensor]) -> torch.device:
    """The one CUDA device of ``inputs`` and the module's parameters; ValueError naming what is elsewhere."""
    if not torch.cuda.is_available():
        raise ValueError(
            f"{what} needs a CUDA device (CUDA graphs exist only there); torch.cuda.is_available() is False"
        )
    if isinstance(inputs, Tensor) or not isinstance(inputs, Sequence) or not inputs:
        raise ValueError(f"example_inputs must be a non-empty sequence of CUDA tensors, got {type(inputs).__name__}")
    devices = {}
    for index, x in enumerate(inputs):
        if not isinstance(x, Tensor):
            raise ValueError(f"example_inputs[{index}] must be a tensor, got {type(x).__name__}")
        devices[f"example_inputs[{index}]"] = x.device
    if module is not None:
        for name, p in module.named_parameters():
            devices[f"parameter {name}"] = p.device
    for name, device in devices.items():
        if device.type != "cuda":
            raise ValueError(f"{what} needs CUDA tensors: {name} is on {device}")
    if len(set(devices.values())) > 1:
        raise ValueError(f"{what} needs everything on one CUDA device, got {sorted(set(map(str, devices.values())))}")
    return next(iter(devices.values()))
