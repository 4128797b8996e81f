"""GPU speed of a ConvLSTM-S training step and of inference: the straightforward per-step formulation against each
fast path of convlstm.accel, side by side in one run, with peak memory and a numerics check of every path.

Workloads, on the ConvLSTM-S shapes of the OpenSTL benchmark (Tan et al. 2023: 4 x 128 hidden, 5x5 kernels,
16x16x16 input, 20 frames; a training step is forward, backward and Adam step on the MSE of the last layer's
outputs against a fixed target):

- train b16: batch 16; reference row: the straightforward formulation in float32 (cuDNN's TF32, torch's default);
- train b128 bf16: batch 128; reference row: the straightforward formulation under bfloat16 autocast;
- infer b16: batch 16, forward only; reference row: the straightforward formulation in float32.

The straightforward formulation is CatConvLSTM of benchmarks/layers.py: one Conv2d over cat([x_t, h]) per step, as
most repositories write it. Every row starts from the same weights and batch. A row's fast paths:

- schedule: the sequence layers' input_schedule ("auto", "fused" = one convolution per step over cat([x, h]), ...);
- bf16: torch.autocast(bfloat16), with the LSTM cell state in float32 unless the row says "bf16 c";
- compiled: the gate arithmetic through torch.compile; graph: the whole step captured in a CUDA graph
  (convlstm.accel.cuda_graphs; Adam with capturable=True); channels_last: parameters and frames channels-last.

Measurements per row: sequences/s from the median of timed rounds of back-to-back steps (one synchronisation per
round) after warm-up; peak memory = torch.cuda.max_memory_allocated from building the row (weights, Adam state,
warm-up, compilation, capture) to the end of its timing, reset between rows; both as ratios to the workload's
reference row. Numerics: the row's output and gradients for the same weights and batch against the straightforward
formulation in exact float32 (TF32 off for both): max |output difference| and max |gradient difference| / max
|gradient|, judged against convlstm.accel.FLOAT32_TOLERANCE or BF16_TOLERANCE.

Time is bounded: each row has a time limit, and rows not started within --budget-s (default 240 s) are skipped
and listed, so that the whole run ends in under 5 minutes; the JSON file is rewritten after every row.

Usage:
    python benchmarks/gpu.py [--json gpu_results.json] [--budget-s 240] [--compile auto|on|off] [--only TEXT ...]
    python benchmarks/gpu.py --device cpu --quick    # the whole pipeline on tiny shapes on the CPU (a test runs it)
"""

import argparse
import contextlib
import dataclasses
import datetime
import gc
import logging
import shlex
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import FrameType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import convlstm
from _timing import device_name, format_columns, peak_memory_mib, reset_peak_memory, synchronize, write_json_atomic
from convlstm.accel import (
    BF16_TOLERANCE,
    FLOAT32_TOLERANCE,
    FastSettings,
    apply_fast_settings,
    capture_inference,
    capture_training_step,
    channels_last_sequence,
    fast_settings,
    make_training_step,
)
from convlstm.layers.schedule import InputSchedule
from layers import SHAPES, CatConvLSTM, CatConvLSTMCell, Shape, copy_weights, exact_float32, make_batch

logger = logging.getLogger("benchmarks.gpu")

EXIT_NO_CUDA = 2
LEARNING_RATE = 5e-4
#: Targets of issue #7 (sequences/s on one H200; ratios against the reference row of the same run).
TARGETS = {"train_small_seq_per_s": 800.0, "train_large_bf16_seq_per_s": 1500.0, "infer_small_ratio": 3.0}
MAX_MEMORY_RATIO = 1.10
QUICK_SHAPE = Shape("quick", 2, 4, 2, 3, 6, 4, cpu_batches=(2,), cuda_batches=(2,), cpu_repeats=2, cuda_repeats=2)


# ----------------------------------------------------------------------------------------------------- rows
@dataclass(frozen=True)
class Spec:
    """One implementation and its fast paths."""

    straightforward: bool = False
    bf16: bool = False
    float32_cell: bool = True
    compile_gates: bool = False
    graph: bool = False
    channels_last: bool = False
    schedule: InputSchedule = "auto"
    #: Rows run in priority order over all workloads (0 first), so that a tight budget skips the extras.
    priority: int = 1

    @property
    def name(self) -> str:
        parts = ["straightforward" if self.straightforward else f"ours {self.schedule}"]
        parts.append(("bf16" if self.float32_cell or self.straightforward else "bf16 c") if self.bf16 else "fp32")
        parts += [label for flag, label in self._flags() if flag]
        return " + ".join([" ".join(parts[:2]), *parts[2:]])

    def _flags(self) -> list[tuple[bool, str]]:
        return [(self.compile_gates, "compiled"), (self.graph, "graph"), (self.channels_last, "channels_last")]

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.bf16 else None

    def settings(self) -> FastSettings:
        return FastSettings(
            input_schedule=self.schedule,
            compile_gates=self.compile_gates,
            cuda_graph=self.graph,
            autocast_dtype=self.autocast_dtype,
            float32_cell_state=self.float32_cell,
            channels_last=self.channels_last,
        )


@dataclass(frozen=True)
class Workload:
    role: str  # "train_small", "train_large_bf16" or "infer_small": the key of its target
    training: bool
    batch: int
    reference: Spec
    rows: tuple[Spec, ...]

    @property
    def name(self) -> str:
        kind = "train" if self.training else "infer"
        return f"{kind} b{self.batch}" + (" bf16" if self.reference.bf16 else "")


def workloads(small: int, large: int) -> list[Workload]:
    """The rows of each workload; the reference row first."""
    fp32_ref = Spec(straightforward=True, priority=0)
    bf16_ref = Spec(straightforward=True, bf16=True, priority=0)
    fast = Spec(schedule="fused", bf16=True, compile_gates=True, graph=True, priority=0)
    train_small = (
        Spec(straightforward=True, bf16=True),
        Spec(straightforward=True, bf16=True, graph=True, priority=0),
        Spec(priority=0),
        Spec(compile_gates=True),
        Spec(schedule="fused", graph=True),
        Spec(schedule="fused", compile_gates=True, graph=True),
        Spec(schedule="fused", bf16=True),
        Spec(schedule="fused", bf16=True, graph=True),
        fast,
        dataclasses.replace(fast, channels_last=True, priority=1),
        dataclasses.replace(fast, schedule="batched", priority=2),
        dataclasses.replace(fast, float32_cell=False, priority=2),
    )
    train_large = (
        Spec(straightforward=True, priority=2),
        Spec(straightforward=True, bf16=True, graph=True, priority=0),
        Spec(bf16=True, priority=0),
        Spec(bf16=True, compile_gates=True),
        Spec(schedule="fused", bf16=True, graph=True),
        fast,
        dataclasses.replace(fast, channels_last=True, priority=1),
        dataclasses.replace(fast, float32_cell=False, priority=2),
    )
    infer_small = (
        Spec(straightforward=True, bf16=True),
        Spec(straightforward=True, bf16=True, graph=True, priority=2),
        Spec(priority=0),
        Spec(schedule="fused", graph=True),
        Spec(schedule="fused", bf16=True, graph=True),
        fast,
        dataclasses.replace(fast, channels_last=True, priority=1),
    )
    return [
        Workload("train_small", True, small, fp32_ref, train_small),
        Workload("train_large_bf16", True, large, bf16_ref, train_large),
        Workload("infer_small", False, small, fp32_ref, infer_small),
    ]


# ----------------------------------------------------------------------------------------------------- building
class RowTimeout(Exception):
    """A row ran past its time limit."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raises RowTimeout in this (main) thread after ``seconds``; work already queued on the GPU still finishes."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise RowTimeout(f"ran past its limit of {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def build_model(spec: Spec, shape: Shape, device: torch.device) -> nn.Module:
    """The row's model with the weights every row shares (seed 0, copied into the straightforward one)."""
    torch.manual_seed(0)
    ours = convlstm.ConvLSTM(shape.in_channels, shape.hidden_channels, shape.kernel_size, shape.num_layers)
    if spec.straightforward:
        straight = CatConvLSTM(shape)
        copy_weights(ours, straight, None)
        return straight.to(device)
    return apply_fast_settings(ours.to(device), spec.settings())


def forward(model: nn.Module, x: Tensor) -> Tensor:
    """(B, T, C, H, W) -> outputs of the last layer (B, T, F, H, W), for either implementation."""
    out = model(x)
    return out if isinstance(out, Tensor) else out[0]


def make_loss(keep: dict[str, Tensor] | None = None) -> Callable[[nn.Module, Tensor, Tensor], Tensor]:
    """loss_fn(model, x, target) -> MSE of the outputs; ``keep["out"]`` gets the outputs when given."""

    def loss_fn(model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        out = forward(model, x)
        if keep is not None:
            keep["out"] = out.detach()
        return F.mse_loss(out.float(), target)

    return loss_fn


def row_inputs(spec: Spec, shape: Shape, batch: int, device: torch.device) -> tuple[Tensor, Tensor]:
    x, target = make_batch(shape, batch, device)
    return (channels_last_sequence(x) if spec.channels_last else x), target


def build_step(spec: Spec, workload: Workload, shape: Shape, device: torch.device) -> Callable[[], object]:
    """The timed step: a training step (forward, backward, Adam) or a forward pass, eager or replayed."""
    model = build_model(spec, shape, device)
    x, target = row_inputs(spec, shape, workload.batch, device)
    dtype = spec.autocast_dtype
    if workload.training:
        if spec.graph:
            optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, capturable=True)
            captured = capture_training_step(model, optimizer, make_loss(), (x, target), autocast_dtype=dtype)
            return lambda: captured(x, target)
        eager = make_training_step(
            model, torch.optim.Adam(model.parameters(), lr=LEARNING_RATE), make_loss(), autocast_dtype=dtype
        )
        return lambda: eager(x, target)
    model.eval()
    if spec.graph:
        graphed = capture_inference(lambda inputs: forward(model, inputs), (x,), autocast_dtype=dtype)
        return lambda: graphed(x)

    def infer() -> None:
        with torch.inference_mode(), autocast(device, dtype):
            forward(model, x)

    return infer


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager[Any]:
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


# ----------------------------------------------------------------------------------------------------- numerics
def cat_layout_gradients(model: nn.Module) -> list[Tensor]:
    """Per layer the gradient of the weight over cat([x, h]) and of the bias, whatever the implementation."""
    grads: list[Tensor | None] = []
    if isinstance(model, CatConvLSTM):
        for cell in model.cells:
            assert isinstance(cell, CatConvLSTMCell) and cell.conv.bias is not None
            grads += [cell.conv.weight.grad, cell.conv.bias.grad]
    else:
        assert isinstance(model, convlstm.ConvLSTM)
        for layer in range(model.num_layers):
            lstm = model.cell(layer)
            assert lstm.input_conv is not None and lstm.bias is not None
            w_in, w_rec = lstm.input_conv.weight.grad, lstm.recurrent_conv.weight.grad
            grads += [None if w_in is None or w_rec is None else torch.cat([w_in, w_rec], dim=1), lstm.bias.grad]
    if any(g is None for g in grads):
        raise ValueError("a parameter got no gradient")
    return [g for g in grads if g is not None]


def run_once(spec: Spec, workload: Workload, shape: Shape, device: torch.device) -> tuple[Tensor, list[Tensor]]:
    """The row's outputs (float32) and gradients (cat layout; none for inference) for the shared weights and batch."""
    model = build_model(spec, shape, device)
    x, target = row_inputs(spec, shape, workload.batch, device)
    dtype = spec.autocast_dtype
    keep: dict[str, Tensor] = {}
    if workload.training:
        if spec.graph:
            captured = capture_training_step(
                model, None, make_loss(keep), (x, target), autocast_dtype=dtype, warmup_steps=1
            )
            captured(x, target)
        else:
            make_training_step(model, None, make_loss(keep), autocast_dtype=dtype)(x, target)
        return keep["out"].float(), [g.float() for g in cat_layout_gradients(model)]
    model.eval()
    if spec.graph:
        out = capture_inference(lambda inputs: forward(model, inputs), (x,), autocast_dtype=dtype, warmup_steps=1)(x)
    else:
        with torch.no_grad(), autocast(device, dtype):
            out = forward(model, x)
    return out.float(), []


def compare(
    got: tuple[Tensor, list[Tensor]], want: tuple[Tensor, list[Tensor]], tolerance: dict[str, float]
) -> dict[str, Any]:
    """Max |output diff| and max |gradient diff| / max |gradient| (over all parameters), against ``tolerance``."""
    output = (got[0] - want[0]).abs().max().item()
    gradient = None
    if want[1]:
        scale = max(g.abs().max().item() for g in want[1])
        gradient = max((g - w).abs().max().item() for g, w in zip(got[1], want[1], strict=True)) / scale
    ok = output <= tolerance["output"] and (gradient is None or gradient <= tolerance["gradient"])
    return {"output_max_abs": output, "gradient_max_rel": gradient, "tolerance": tolerance, "ok": ok}


# ----------------------------------------------------------------------------------------------------- timing
def time_steps(
    step: Callable[[], object], device: torch.device, *, warmup: int, target_s: float, rounds: int, max_steps: int
) -> dict[str, Any]:
    """Median seconds per step over ``rounds`` rounds of back-to-back steps, sized to take ``target_s`` in all."""
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    step()
    synchronize(device)
    single = time.perf_counter() - start
    per_round = max(2, min(max_steps, round(target_s / rounds / max(single, 1e-6))))
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(per_round):
            step()
        synchronize(device)
        times.append((time.perf_counter() - start) / per_round)
    return {"step_s": statistics.median(times), "round_step_s": times, "steps_per_round": per_round}


@dataclass
class Context:
    """What every row of a run shares."""

    device: torch.device
    shape: Shape
    compile_enabled: bool
    quick: bool
    budget_s: float
    started: float
    only: list[str]
    fast: FastSettings

    def remaining_s(self) -> float:
        return self.budget_s - (time.perf_counter() - self.started)

    def row_limit_s(self, spec: Spec) -> float:
        """A row may overrun the budget by 20 s at most; compilation (cold: tens of seconds) gets more room."""
        base = 20.0 if self.quick else (100.0 if spec.compile_gates else 45.0)
        return max(5.0, min(base, self.remaining_s() + 20.0))


def skip_reason(spec: Spec, ctx: Context, *, is_reference: bool) -> str | None:
    if spec.graph and ctx.device.type != "cuda":
        return "CUDA graphs need a CUDA device"
    if spec.compile_gates and not ctx.compile_enabled:
        return "torch.compile is off (--compile off; the default on the CPU)"
    if ctx.only and not is_reference and not any(text in spec.name for text in ctx.only):
        return "not selected by --only"
    return None


def measure_row(
    spec: Spec,
    workload: Workload,
    ctx: Context,
    reference: tuple[Tensor, list[Tensor]] | None,
    *,
    is_reference: bool,
) -> dict[str, Any]:
    """Numerics, then timing and peak memory of one row; a failure or timeout is recorded, not raised."""
    row: dict[str, Any] = {"name": spec.name, "settings": dataclasses.asdict(spec), "status": "skipped"}
    row["fast_settings"] = not spec.straightforward and spec.settings() == ctx.fast
    reason = skip_reason(spec, ctx, is_reference=is_reference)
    if reason is None and ctx.remaining_s() <= 0:
        reason = f"time budget of {ctx.budget_s:.0f} s spent"
    if reason is not None:
        row["reason"] = reason
        return row
    logger.info("%s: %s", workload.name, spec.name)
    start = time.perf_counter()
    try:
        with time_limit(ctx.row_limit_s(spec)):
            if reference is not None:
                with exact_float32():
                    got = run_once(spec, workload, ctx.shape, ctx.device)
                row["numerics"] = compare(got, reference, BF16_TOLERANCE if spec.bf16 else FLOAT32_TOLERANCE)
                del got
            release(ctx.device)
            reset_peak_memory(ctx.device)
            build_start = time.perf_counter()
            step = build_step(spec, workload, ctx.shape, ctx.device)
            row["build_s"] = time.perf_counter() - build_start
            timing = time_steps(
                step,
                ctx.device,
                warmup=2 if not spec.graph else 1,
                target_s=0.2 if ctx.quick else 1.5,
                rounds=2 if ctx.quick else 3,
                max_steps=4 if ctx.quick else 40,
            )
            del step
            row.update(timing)
            row["seq_per_s"] = workload.batch / timing["step_s"]
            row["peak_mib"] = peak_memory_mib(ctx.device)
            if ctx.device.type == "cuda":
                row["peak_reserved_mib"] = torch.cuda.max_memory_reserved(ctx.device) / 2**20
            row["status"] = "ok"
    except Exception as error:  # a failed row (out of memory, capture, compile, timeout) must not end the run
        text = str(error).strip().splitlines()
        row["status"] = "failed"
        row["error"] = f"{type(error).__name__}: {text[0] if text else ''}"
        logger.warning("%s / %s failed: %s", workload.name, spec.name, row["error"])
    finally:
        release(ctx.device)
    row["wall_s"] = time.perf_counter() - start
    return row


def release(device: torch.device) -> None:
    """Frees what the last row left (graphs, compiled code's buffers, reference cycles)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------------- report
def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Rate and peak memory of each row over the reference row's (the first)."""
    reference = rows[0]
    for row in rows:
        for key, ratio_key in (("seq_per_s", "speed_ratio"), ("peak_mib", "memory_ratio")):
            mine, theirs = row.get(key), reference.get(key)
            row[ratio_key] = mine / theirs if mine is not None and theirs else None


def format_workload(workload: dict[str, Any]) -> str:
    header = ["row", "seq/s", "vs ref", "peak MiB", "vs ref", "out diff", "grad diff", "numerics", "build s"]
    lines = []
    for row in workload["rows"]:
        name = row["name"] + (" (ref)" if row is workload["rows"][0] else "") + (" *" if row["fast_settings"] else "")
        if row["status"] != "ok":
            lines.append([name, f"{row['status']}: {row.get('error') or row.get('reason')}"])
            continue
        numerics = row.get("numerics") or {}
        lines.append(
            [
                name,
                f"{row['seq_per_s']:.1f}",
                _fmt(row["speed_ratio"], "{:.2f}x"),
                _fmt(row["peak_mib"], "{:.0f}"),
                _fmt(row["memory_ratio"], "{:.2f}x"),
                _fmt(numerics.get("output_max_abs"), "{:.1e}"),
                _fmt(numerics.get("gradient_max_rel"), "{:.1e}"),
                "-" if not numerics else ("ok" if numerics["ok"] else "OUT OF TOLERANCE"),
                _fmt(row.get("build_s"), "{:.1f}"),
            ]
        )
    return format_columns(header, lines)


def _fmt(value: float | None, template: str) -> str:
    return "-" if value is None else template.format(value)


def summarize_targets(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets against the best of our rows in each workload (with that row's memory ratio)."""
    summary: dict[str, Any] = {"applies": result["device_type"] == "cuda", "max_memory_ratio": MAX_MEMORY_RATIO}
    for workload in result["workloads"]:
        ours = [r for r in workload["rows"] if r["status"] == "ok" and not r["settings"]["straightforward"]]
        role = workload["role"]
        if role == "train_large_bf16":
            ours = [r for r in ours if r["settings"]["bf16"]]
        if not ours:
            summary[role] = None
            continue
        best = max(ours, key=lambda r: r["seq_per_s"])
        measure, target = (
            ("speed_ratio", TARGETS["infer_small_ratio"])
            if role == "infer_small"
            else ("seq_per_s", TARGETS[f"{role}_seq_per_s"])
        )
        value = best[measure]
        memory = best["memory_ratio"]
        summary[role] = {
            "best_row": best["name"],
            "measure": measure,
            "value": value,
            "target": target,
            "met": value is not None and value >= target,
            "memory_ratio": memory,
            "memory_met": memory is not None and memory <= MAX_MEMORY_RATIO,
            "numerics_ok": (best.get("numerics") or {}).get("ok"),
        }
    return summary


def format_targets(summary: dict[str, Any]) -> str:
    lines = [] if summary["applies"] else ["(targets are for one H200; this run was not on CUDA)"]
    for role in ("train_small", "train_large_bf16", "infer_small"):
        entry = summary.get(role)
        if entry is None:
            lines.append(f"{role}: no row of ours ran")
            continue
        lines.append(
            f"{role}: best {entry['best_row']}: {entry['measure']} {_fmt(entry['value'], '{:.2f}')} vs target "
            f"{entry['target']:g} "
            f"({'met' if entry['met'] else 'NOT met'}); memory {_fmt(entry['memory_ratio'], '{:.2f}x')} of the "
            f"reference ({'met' if entry['memory_met'] else 'NOT met'}, <= {MAX_MEMORY_RATIO:.2f}x); numerics "
            f"{entry['numerics_ok']}"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny shapes (the pipeline check; required on the CPU)")
    parser.add_argument("--json", default="gpu_results.json", help="output file (default gpu_results.json)")
    parser.add_argument("--budget-s", type=float, default=240.0, help="no row starts after this many seconds")
    parser.add_argument("--compile", choices=("auto", "on", "off"), default="auto", help="auto: on for CUDA only")
    parser.add_argument("--only", nargs="+", default=[], help="run only rows whose name contains one of these")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    else:
        torch.set_num_threads(1)
    # Compiled gates specialise per shape, dtype, grad mode, autocast and strides: room for every row's variant
    # (past the limit torch would run the gates eagerly and the compiled rows would time eager code).
    config = torch._dynamo.config
    limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # renamed in torch 2.7
    setattr(config, limit, max(getattr(config, limit), 64))
    shape = QUICK_SHAPE if args.quick else SHAPES["openstl-s"]
    small, large = (2, 3) if args.quick else (16, 128)
    ctx = Context(
        device=device,
        shape=shape,
        compile_enabled=args.compile == "on" or (args.compile == "auto" and device.type == "cuda"),
        quick=args.quick,
        budget_s=args.budget_s,
        started=started,
        only=args.only,
        fast=fast_settings(device),
    )
    result = metadata(args, ctx)
    plan = workloads(small, large)
    result["workloads"] = [
        {"name": w.name, "role": w.role, "training": w.training, "batch": w.batch, "rows": []} for w in plan
    ]
    references: dict[str, tuple[Tensor, list[Tensor]] | None] = {}
    slots: dict[tuple[int, int], dict[str, Any]] = {}
    order = sorted(
        (
            (index, position, spec)
            for index, w in enumerate(plan)
            for position, spec in enumerate((w.reference, *w.rows))
        ),
        key=lambda item: (item[2].priority, item[0], item[1]),
    )
    for index, position, spec in order:
        workload = plan[index]
        if workload.name not in references:
            references[workload.name] = reference_numerics(workload, ctx)
        slots[(index, position)] = measure_row(
            spec, workload, ctx, references[workload.name], is_reference=position == 0
        )
        fill(result, plan, slots)
        result["elapsed_s"] = time.perf_counter() - started
        write_json_atomic(args.json, result)
    result["targets"] = summarize_targets(result)
    result["elapsed_s"] = time.perf_counter() - started
    write_json_atomic(args.json, result)
    print(f"{result['device']}, torch {result['torch']}; fast_settings: {result['fast_settings']} (rows marked *)")
    for workload in result["workloads"]:
        print(f"\n{workload['name']} ({ctx.shape.describe()}, batch {workload['batch']})")
        print(format_workload(workload))
    print("\n" + format_targets(result["targets"]))
    print(f"\n{result['elapsed_s']:.0f} s; wrote {args.json}")
    return result


def reference_numerics(workload: Workload, ctx: Context) -> tuple[Tensor, list[Tensor]] | None:
    """The straightforward formulation in exact float32: outputs and gradients every row is compared with."""
    try:
        with exact_float32():
            return run_once(Spec(straightforward=True), workload, ctx.shape, ctx.device)
    except Exception as error:
        logger.warning("%s: the float32 reference failed (%s): no numerics for its rows", workload.name, error)
        return None


def fill(result: dict[str, Any], plan: list[Workload], slots: dict[tuple[int, int], dict[str, Any]]) -> None:
    """Rows of each workload in table order (reference first), with ratios, into ``result``."""
    for index, workload in enumerate(plan):
        rows = [slots[(index, p)] for p in range(len(workload.rows) + 1) if (index, p) in slots]
        if rows and (index, 0) in slots:
            add_ratios(rows)
        result["workloads"][index]["rows"] = rows


def metadata(args: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    cuda = ctx.device.type == "cuda"
    return {
        "command": "python " + shlex.join(sys.argv),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": device_name(ctx.device),
        "device_type": ctx.device.type,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "cudnn_benchmark": torch.backends.cudnn.benchmark if cuda else None,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32 if cuda else None,
        "convlstm": convlstm.__version__,
        "quick": args.quick,
        "compile": ctx.compile_enabled,
        "budget_s": args.budget_s,
        "shape": dataclasses.asdict(ctx.shape),
        "fast_settings": ctx.fast.describe(),
        "tolerances": {"float32": FLOAT32_TOLERANCE, "bfloat16": BF16_TOLERANCE},
        "targets_of_issue": {**TARGETS, "max_memory_ratio": MAX_MEMORY_RATIO},
    }


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    if args.device == "cpu" and not args.quick:
        print("benchmarks/gpu.py measures a GPU; on the CPU only --quick (the pipeline check) runs", file=sys.stderr)
        return EXIT_NO_CUDA
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "benchmarks/gpu.py needs a CUDA GPU, and torch.cuda.is_available() is False; to check the pipeline on "
            "the CPU run: python benchmarks/gpu.py --device cpu --quick",
            file=sys.stderr,
        )
        return EXIT_NO_CUDA
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
