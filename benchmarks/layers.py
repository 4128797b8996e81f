"""Training and inference speed of convlstm.ConvLSTM next to the formulation most repositories use and Keras.

One run times, on the same shapes and data, a training step (forward + backward + Adam step, MSE of the last
layer's outputs against a random target) and a forward pass under inference_mode of:

- "straightforward": the per-step cell most repositories write, one Conv2d over cat([x_t, h]) giving 4F channels,
  a Python loop over time, zero initial state, layers stacked (written here, independently of the package);
- "keras ConvLSTM2D": keras.layers.ConvLSTM2D on the torch backend, stacked, channels-last input (training only);
- "ours": convlstm.ConvLSTM once per explicit input_schedule ("per_step", "batched", "fused", ...), the one that
  "auto" picks for the shape, batch and device marked "(auto)";
- with --compile-gates, ours with the gate arithmetic (lstm_pointwise) wrapped by torch.compile;
- with --lengths, ours ("auto") on a padded batch: half the sequences at full length, half at half length, passed
  as ``lengths=`` (all steps are still computed; masking adds a select per step). Without ``lengths`` the layer
  runs the unmasked code path, so the other rows are those of the plain layer.

Before timing, every implementation gets the same weights and must give the same outputs on a small input, so the
table compares equal computations. Rates are sequences per second (median over the repeats, warm-up excluded).

Usage:
    python benchmarks/layers.py --device cpu|cuda --dtype float32|bfloat16 [--shape small|openstl-s|all]
        [--batch N ...] [--json FILE] [--repeats N] [--warmup N] [--threads N] [--compile-gates] [--lengths]
        [--no-keras]
"""

import argparse
import contextlib
import datetime
import logging
import os
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from functools import partial
from types import ModuleType
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import convlstm
import convlstm.layers.lstm_cell as lstm_cell_module
from _timing import (
    Timing,
    device_name,
    format_columns,
    peak_memory_mib,
    reset_peak_memory,
    time_calls,
    write_json_atomic,
)
from convlstm.layers.schedule import SCHEDULES, InputSchedule, choose_schedule

logger = logging.getLogger("benchmarks.layers")

STRAIGHTFORWARD = "straightforward (cat)"
KERAS = "keras ConvLSTM2D"


# ----------------------------------------------------------------------------------------------------- shapes
@dataclass(frozen=True)
class Shape:
    """A stack of ConvLSTM layers and the sequences it runs on; square frames, "same" padding."""

    name: str
    in_channels: int
    hidden_channels: int
    num_layers: int
    kernel_size: int
    frame_size: int
    frames: int
    cpu_batches: tuple[int, ...]
    cuda_batches: tuple[int, ...]
    cpu_repeats: int
    cuda_repeats: int

    def describe(self) -> str:
        return (
            f"{self.num_layers} layers x {self.hidden_channels} hidden, {self.kernel_size}x{self.kernel_size} kernels, "
            f"input {self.in_channels}x{self.frame_size}x{self.frame_size}, {self.frames} frames"
        )


SHAPES = {
    # About 0.3 s per training step at batch 8 on 2 quiet CPU cores (float32).
    "small": Shape(
        "small", 1, 32, 2, 3, 32, 10, cpu_batches=(8,), cuda_batches=(8, 64), cpu_repeats=5, cuda_repeats=20
    ),
    # OpenSTL ConvLSTM-S on Moving MNIST: 64x64 frames as 4x4 patches, all 20 frames fed in (Tan et al. 2023).
    "openstl-s": Shape(
        "openstl-s", 16, 128, 4, 5, 16, 20, cpu_batches=(4,), cuda_batches=(16, 128), cpu_repeats=3, cuda_repeats=20
    ),
}
DEFAULT_SHAPES = {"cpu": ("small", "openstl-s"), "cuda": ("openstl-s",)}


# ----------------------------------------------------------------------------------------------------- the usual cell
class CatConvLSTMCell(nn.Module):
    """The ConvLSTM cell as most repositories write it: one convolution over cat([x, h]) for all four gates."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.conv = nn.Conv2d(in_channels + hidden_channels, 4 * hidden_channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        h, c = state
        i, f, g, o = self.conv(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class CatConvLSTM(nn.Module):
    """Layers of :class:`CatConvLSTMCell`, each run over all steps before the next.

    Shape: (B, T, C, H, W) -> (B, T, F, H, W), the outputs of the last layer.
    """

    def __init__(self, shape: Shape) -> None:
        super().__init__()
        self.hidden_channels = shape.hidden_channels
        channels = [shape.in_channels] + [shape.hidden_channels] * shape.num_layers
        self.cells = nn.ModuleList(
            CatConvLSTMCell(channels[i], channels[i + 1], shape.kernel_size) for i in range(shape.num_layers)
        )

    def forward(self, x: Tensor) -> Tensor:
        batch, steps, _, height, width = x.shape
        for cell in self.cells:
            h = x.new_zeros(batch, self.hidden_channels, height, width)
            c = torch.zeros_like(h)
            outputs = []
            for t in range(steps):
                h, c = cell(x[:, t], (h, c))
                outputs.append(h)
            x = torch.stack(outputs, dim=1)
        return x


# ----------------------------------------------------------------------------------------------------- candidates
@dataclass
class Candidate:
    """One implementation to time: a forward function over a sequence and the parameters Adam updates."""

    name: str
    forward: Callable[[Tensor], Tensor]
    parameters: list[Tensor]
    channels_last: bool = False
    time_inference: bool = True
    # Entered around the timing of this candidate only (e.g. to patch in compiled gates).
    context: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext


def straightforward_candidate(shape: Shape, device: torch.device) -> tuple[Candidate, CatConvLSTM]:
    model = CatConvLSTM(shape).to(device)
    return Candidate(STRAIGHTFORWARD, model, list(model.parameters())), model


def ours_candidate(
    shape: Shape, device: torch.device, schedule: InputSchedule, *, name: str | None = None
) -> tuple[Candidate, convlstm.ConvLSTM]:
    model = convlstm.ConvLSTM(
        shape.in_channels,
        shape.hidden_channels,
        shape.kernel_size,
        shape.num_layers,
        input_schedule=schedule,
    ).to(device)
    return Candidate(name or f"ours {schedule}", lambda x: model(x)[0], list(model.parameters())), model


def keras_candidate(keras: ModuleType, shape: Shape) -> tuple[Candidate, list[Any]]:
    """Keras layers on the torch backend are torch modules; their weights' ``.value`` are torch Parameters."""
    layers = [
        keras.layers.ConvLSTM2D(shape.hidden_channels, shape.kernel_size, padding="same", return_sequences=True)
        for _ in range(shape.num_layers)
    ]
    channels = shape.in_channels
    for layer in layers:
        layer.build((None, shape.frames, shape.frame_size, shape.frame_size, channels))
        channels = shape.hidden_channels

    def forward(x: Tensor) -> Tensor:
        for layer in layers:
            x = layer(x, training=True)
        return x

    parameters = [weight.value for layer in layers for weight in layer.trainable_weights]
    return Candidate(KERAS, forward, parameters, channels_last=True, time_inference=False), layers


@contextlib.contextmanager
def compiled_gates() -> Iterator[None]:
    """Replaces lstm_pointwise, looked up as a global by ConvLSTMCell.pointwise, by its torch.compile'd version."""
    original = lstm_cell_module.lstm_pointwise
    torch._dynamo.reset()
    lstm_cell_module.lstm_pointwise = torch.compile(original, dynamic=False)
    try:
        yield
    finally:
        lstm_cell_module.lstm_pointwise = original
        torch._dynamo.reset()


def load_keras(device: torch.device) -> ModuleType | None:
    """Imports Keras 3 on the torch backend with its tensors on ``device``; None (with a note) if unavailable."""
    os.environ["KERAS_BACKEND"] = "torch"
    os.environ["KERAS_TORCH_DEVICE"] = str(device)
    try:
        import keras
    except ImportError as error:
        logger.warning("keras is not importable (%s): skipping the Keras rows", error)
        return None
    if keras.backend.backend() != "torch":
        logger.warning(
            "keras was imported with the %s backend before this script: skipping it", keras.backend.backend()
        )
        return None
    return keras


# ----------------------------------------------------------------------------------------------------- equivalence
def copy_weights(source: convlstm.ConvLSTM, straightforward: CatConvLSTM, keras_layers: list[Any] | None) -> None:
    """Gives the other implementations our weights: W_cat = [W_input | W_recurrent], Keras = W.permute(2, 3, 1, 0)."""
    with torch.no_grad():
        for layer, module in enumerate(straightforward.cells):
            cat_cell, cell = cast(CatConvLSTMCell, module), source.cell(layer)
            assert cell.input_conv is not None and cell.bias is not None and cat_cell.conv.bias is not None
            cat_cell.conv.weight.copy_(torch.cat([cell.input_conv.weight, cell.recurrent_conv.weight], dim=1))
            cat_cell.conv.bias.copy_(cell.bias)
            if keras_layers is not None:
                keras_cell = keras_layers[layer].cell
                keras_cell.kernel.assign(cell.input_conv.weight.permute(2, 3, 1, 0))
                keras_cell.recurrent_kernel.assign(cell.recurrent_conv.weight.permute(2, 3, 1, 0))
                keras_cell.bias.assign(cell.bias)


@contextlib.contextmanager
def exact_float32() -> Iterator[None]:
    """Turns TF32 off on CUDA, so that implementations can be compared to float32 precision."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def check_equivalence(shape: Shape, device: torch.device, keras: ModuleType | None) -> dict[str, float]:
    """Largest absolute output difference of each implementation from ours, in float32 on a small input."""
    small = Shape(**{**asdict(shape), "frame_size": 8, "frames": 3})
    torch.manual_seed(0)
    ours, ours_model = ours_candidate(small, device, "per_step")
    with torch.no_grad():
        for layer in range(len(ours_model.cells)):
            cell = ours_model.cell(layer)
            assert cell.bias is not None
            cell.bias.normal_()  # a nonzero bias in every gate, so that a misplaced gate block shows
    others = []
    for schedule in explicit_schedules()[1:]:
        other, other_model = ours_candidate(small, device, schedule)
        other_model.load_state_dict(ours_model.state_dict())
        others.append(other)
    straight, straight_model = straightforward_candidate(small, device)
    keras_pair = keras_candidate(keras, small) if keras is not None else None
    copy_weights(ours_model, straight_model, None if keras_pair is None else keras_pair[1])
    x = torch.randn(2, small.frames, small.in_channels, small.frame_size, small.frame_size, device=device)
    differences = {}
    with torch.no_grad(), exact_float32():
        reference = ours.forward(x)
        for other in others:
            differences[other.name] = (other.forward(x) - reference).abs().max().item()
        differences[straight.name] = (straight.forward(x) - reference).abs().max().item()
        if keras_pair is not None:
            keras_out = keras_pair[0].forward(to_channels_last(x))
            differences[KERAS] = (from_channels_last(keras_out) - reference).abs().max().item()
    return differences


def to_channels_last(x: Tensor) -> Tensor:
    return x.permute(0, 1, 3, 4, 2).contiguous()  # (B, T, C, H, W) -> (B, T, H, W, C)


def from_channels_last(x: Tensor) -> Tensor:
    return x.permute(0, 1, 4, 2, 3)  # (B, T, H, W, C) -> (B, T, C, H, W)


def count_parameters(parameters: list[Tensor]) -> int:
    return sum(p.numel() for p in parameters)


# ----------------------------------------------------------------------------------------------------- timing
@dataclass
class Row:
    """Measurements of one implementation at one shape and batch size."""

    shape: str
    batch: int
    name: str
    parameters: int
    train: Timing | None = None
    inference: Timing | None = None
    train_peak_mib: float | None = None
    inference_peak_mib: float | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    def train_rate(self) -> float | None:
        return None if self.train is None else self.batch / self.train.median_s

    def inference_rate(self) -> float | None:
        return None if self.inference is None else self.batch / self.inference.median_s

    def spread(self) -> float | None:
        """Slowest over fastest timed training step: near 1 on a quiet machine, large when others share it."""
        return None if self.train is None else max(self.train.times_s) / min(self.train.times_s)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["train_sequences_per_s"] = self.train_rate()
        data["inference_sequences_per_s"] = self.inference_rate()
        for key in ("train", "inference"):
            timing: Timing | None = getattr(self, key)
            if timing is not None:
                data[key]["median_s"] = timing.median_s
        return data


@dataclass(frozen=True)
class Settings:
    """How every row of one table is run."""

    device: torch.device
    dtype: torch.dtype
    warmup: int
    repeats: int

    def autocast(self) -> AbstractContextManager[Any]:
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)


def make_batch(shape: Shape, batch: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """A random input (B, T, C, H, W) and target (B, T, F, H, W), the same for every implementation."""
    generator = torch.Generator().manual_seed(1234)
    size = (shape.frame_size, shape.frame_size)
    x = torch.randn(batch, shape.frames, shape.in_channels, *size, generator=generator)
    target = torch.randn(batch, shape.frames, shape.hidden_channels, *size, generator=generator)
    return x.to(device), target.to(device)


def training_step(candidate: Candidate, x: Tensor, target: Tensor, settings: Settings) -> Callable[[], None]:
    optimizer = torch.optim.Adam(candidate.parameters, lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with settings.autocast():
            loss = F.mse_loss(candidate.forward(x).float(), target)
        loss.backward()
        optimizer.step()

    return step


def inference_step(candidate: Candidate, x: Tensor, settings: Settings) -> Callable[[], None]:
    def step() -> None:
        with torch.inference_mode(), settings.autocast():
            candidate.forward(x)

    return step


def measure(make: Callable[[], Candidate], shape: Shape, batch: int, settings: Settings) -> Row:
    """Builds one candidate and times its training step, then its inference.

    A failure while timing (out of memory, a failed compilation) is reported in the row and the run goes on.
    """
    device = settings.device
    timed = partial(time_calls, device=device, warmup=settings.warmup, repeats=settings.repeats)
    torch.manual_seed(0)
    reset_peak_memory(device)  # the training peak includes parameters, gradients and Adam's state
    candidate = make()
    row = Row(shape.name, batch, candidate.name, count_parameters(candidate.parameters))
    logger.info("timing %s, %s, batch %d", candidate.name, shape.name, batch)
    x, target = make_batch(shape, batch, device)
    if candidate.channels_last:
        x, target = to_channels_last(x), to_channels_last(target)
    try:
        with candidate.context():
            row.train = timed(training_step(candidate, x, target, settings))
            row.train_peak_mib = peak_memory_mib(device)
            for p in candidate.parameters:
                p.grad = None
            if candidate.time_inference:
                reset_peak_memory(device)
                row.inference = timed(inference_step(candidate, x, settings))
                row.inference_peak_mib = peak_memory_mib(device)
    except Exception as error:
        row.error = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
        logger.warning("%s at batch %d failed: %s", candidate.name, batch, row.error)
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def explicit_schedules() -> list[InputSchedule]:
    """Every input_schedule but "auto", "per_step" first."""
    schedules = [s for s in SCHEDULES if s != "auto"]
    return sorted(schedules, key=lambda s: s != "per_step")


def auto_schedule(shape: Shape, batch: int, device: torch.device) -> str:
    """The schedule input_schedule="auto" runs for this shape, batch and device."""
    can_fuse = convlstm.ConvLSTMCell(shape.in_channels, shape.hidden_channels, shape.kernel_size).can_fuse
    probe = torch.empty(batch, shape.frames, shape.in_channels, 1, 1, device=device)
    return choose_schedule(probe, can_fuse=can_fuse)


def padded_lengths(shape: Shape, batch: int, device: torch.device) -> Tensor:
    """Lengths of a padded batch: the first half of the sequences full, the rest half as long (at least 1)."""
    lengths = torch.full((batch,), shape.frames, dtype=torch.int64)
    lengths[(batch + 1) // 2 :] = max(1, shape.frames // 2)
    return lengths.to(device)


def candidates_for(
    shape: Shape,
    batch: int,
    device: torch.device,
    keras: ModuleType | None,
    compile_gates: bool,
    with_lengths: bool = False,
) -> list[Callable[[], Candidate]]:
    """Builders of the implementations to time, in table order; each is built just before it is timed.

    Ours runs once per explicit schedule; the one input_schedule="auto" picks here is marked "(auto)".
    """
    auto = auto_schedule(shape, batch, device)

    def ours(schedule: InputSchedule, name: str) -> Candidate:
        return ours_candidate(shape, device, schedule, name=name)[0]

    def ours_compiled() -> Candidate:
        candidate = ours("auto", f"ours {auto} (auto) + compiled gates")
        candidate.context = compiled_gates
        return candidate

    def ours_padded() -> Candidate:
        candidate, model = ours_candidate(shape, device, "auto")
        lengths = padded_lengths(shape, batch, device)
        candidate.name = f"ours {auto} (auto), lengths="
        candidate.forward = lambda x: model(x, lengths=lengths)[0]
        return candidate

    makers: list[Callable[[], Candidate]] = [lambda: straightforward_candidate(shape, device)[0]]
    if keras is not None:
        makers.append(lambda: keras_candidate(keras, shape)[0])
    for schedule in sorted(explicit_schedules(), key=lambda s: s != auto):
        makers.append(partial(ours, schedule, f"ours {schedule}" + (" (auto)" if schedule == auto else "")))
    if compile_gates:
        makers.append(ours_compiled)
    if with_lengths:
        makers.append(ours_padded)
    return makers


# ----------------------------------------------------------------------------------------------------- report
def ratio(value: float | None, reference: float | None) -> str:
    return "-" if value is None or not reference else f"{value / reference:.2f}x"


def number(value: float | None, template: str = "{:.2f}") -> str:
    return "-" if value is None else template.format(value)


def format_table(rows: list[Row], device: torch.device) -> str:
    """One line per implementation: rates, their ratios to the straightforward formulation and to Keras, and the
    spread of the training step times (max/min; far above 1 means the machine was busy and the rates are noise)."""
    by_name = {row.name: row for row in rows}
    straight, keras = by_name.get(STRAIGHTFORWARD), by_name.get(KERAS)
    straight_train = straight.train_rate() if straight else None
    straight_inference = straight.inference_rate() if straight else None
    keras_train = keras.train_rate() if keras else None
    header = ["implementation", "train seq/s", "vs straight", "vs keras", "infer seq/s", "vs straight", "max/min"]
    if device.type == "cuda":
        header += ["train MiB", "infer MiB"]
    lines = []
    for row in rows:
        if row.error is not None:
            lines.append([row.name, f"failed: {row.error}"])
            continue
        cells = [
            row.name,
            number(row.train_rate()),
            ratio(row.train_rate(), straight_train),
            ratio(row.train_rate(), keras_train),
            number(row.inference_rate()),
            ratio(row.inference_rate(), straight_inference),
            number(row.spread(), "{:.2f}"),
        ]
        if device.type == "cuda":
            cells += [number(row.train_peak_mib, "{:.0f}"), number(row.inference_peak_mib, "{:.0f}")]
        lines.append(cells)
    return format_columns(header, lines)


def compile_notes(rows: list[Row]) -> list[str]:
    """First-call overhead of compiled rows: first step minus the median step (compilation of both passes).

    torch keeps compiled kernels in an on-disk cache, so a second run of the same shapes shows less.
    """
    notes = []
    for row in rows:
        if "compiled" in row.name and row.train is not None:
            note = f"{row.name}: compile overhead {row.train.first_s - row.train.median_s:.1f} s (training)"
            if row.inference is not None:
                note += f", {row.inference.first_s - row.inference.median_s:.1f} s (inference)"
            row.notes.append(note)
            notes.append(note)
    return notes


# ----------------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument(
        "--shape", choices=(*SHAPES, "all"), default=None, help="default: small + openstl-s on cpu, openstl-s on cuda"
    )
    parser.add_argument(
        "--batch", type=int, nargs="+", default=None, help="batch sizes (default: per shape and device)"
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per row (default: per shape and device)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per row, >= 1 (default: 1 cpu, 5 cuda)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", default=None, help="write all numbers to this file")
    parser.add_argument("--compile-gates", action="store_true", help="add a row with torch.compile'd gate arithmetic")
    parser.add_argument("--no-keras", action="store_true", help="skip keras.layers.ConvLSTM2D")
    parser.add_argument("--lengths", action="store_true", help="add a row: ours on a padded batch with lengths=")
    args = parser.parse_args(argv)
    for name in ("batch", "repeats", "warmup", "threads"):
        values = getattr(args, name)
        if any(v is not None and v < 1 for v in (values if isinstance(values, list) else [values])):
            parser.error(f"--{name} must be >= 1, got {values}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda was asked for, but torch.cuda.is_available() is False")
    return args


def plan(args: argparse.Namespace) -> list[tuple[Shape, int]]:
    """(shape, batch) pairs to run, in order."""
    names = (
        DEFAULT_SHAPES[args.device] if args.shape is None else (tuple(SHAPES) if args.shape == "all" else (args.shape,))
    )
    pairs = []
    for name in names:
        shape = SHAPES[name]
        default = shape.cuda_batches if args.device == "cuda" else shape.cpu_batches
        pairs += [(shape, batch) for batch in (args.batch or default)]
    return pairs


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Runs every (shape, batch) of the plan, prints a table for each and returns (and writes) all numbers."""
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    keras = None if args.no_keras else load_keras(device)
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    result = run_metadata(args, device, keras)
    print(f"{result['device']}, torch {torch.__version__}, keras {result['keras']}, {args.dtype}")
    for shape, batch in plan(args):
        if shape.name not in result["shapes"]:
            result["shapes"][shape.name] = describe_shape(shape, device, keras)
        warmup = args.warmup or (5 if device.type == "cuda" else 1)
        repeats = args.repeats or (shape.cuda_repeats if device.type == "cuda" else shape.cpu_repeats)
        settings = Settings(device, dtype, warmup, repeats)
        print(f"\n{shape.name}, batch {batch}: {shape.describe()}; warm-up {warmup}, median of {repeats}")
        makers = candidates_for(shape, batch, device, keras, args.compile_gates, args.lengths)
        rows = [measure(make, shape, batch, settings) for make in makers]
        print(format_table(rows, device))
        for note in compile_notes(rows):
            print(note)
        result["rows"] += [row.to_json() for row in rows]
        if args.json:
            write_json_atomic(args.json, result)
    return result


def run_metadata(args: argparse.Namespace, device: torch.device, keras: ModuleType | None) -> dict[str, Any]:
    return {
        "command": "python " + shlex.join(sys.argv),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": device_name(device),
        "torch": torch.__version__,
        "keras": None if keras is None else keras.__version__,
        "convlstm": convlstm.__version__,
        "dtype": args.dtype,
        "cudnn_benchmark": torch.backends.cudnn.benchmark if device.type == "cuda" else None,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32 if device.type == "cuda" else None,
        "torch_threads": torch.get_num_threads(),
        "shapes": {},
        "rows": [],
    }


def describe_shape(shape: Shape, device: torch.device, keras: ModuleType | None) -> dict[str, Any]:
    """Parameter counts and the equivalence check of one shape; printed and returned for the JSON file."""
    torch.manual_seed(0)
    counts = {
        STRAIGHTFORWARD: count_parameters(straightforward_candidate(shape, device)[0].parameters),
        "ours (no peepholes)": count_parameters(ours_candidate(shape, device, "auto")[0].parameters),
    }
    if keras is not None:
        counts[KERAS] = count_parameters(keras_candidate(keras, shape)[0].parameters)
    differences = check_equivalence(shape, device, keras)
    equal_counts = len(set(counts.values())) == 1
    same_outputs = all(d < 1e-4 for d in differences.values())
    print(f"\n{shape.name}: parameters " + ", ".join(f"{k} {v:,}" for k, v in counts.items()), end="")
    print(" (equal)" if equal_counts else " (NOT EQUAL)")
    print(
        f"{shape.name}: max |output - ours| with shared weights, float32: "
        + ", ".join(f"{k} {v:.1e}" for k, v in differences.items())
        + ("" if same_outputs else "  <- NOT THE SAME FUNCTION")
    )
    if not (equal_counts and same_outputs):
        logger.warning("%s: the implementations differ; ratios compare different computations", shape.name)
    return {**asdict(shape), "parameters": counts, "max_abs_difference": differences}


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    run_benchmark(args)
    if args.json:
        logger.info("wrote %s", args.json)


if __name__ == "__main__":
    main()
