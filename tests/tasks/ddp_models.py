"""Run by test_ddp.py on two processes (RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT set, gloo):
``python -m tests.tasks.ddp_models OUT_DIR [--all]``. Every registered model with parameters (with ``--all`` also
those over :data:`CI_MAX_PARAMETERS`) trains two steps under torch's DistributedDataParallel with
``find_unused_parameters=False``, each rank on its half of a batch. Rank 0 also computes the gradient of the whole
batch in one process. Each rank writes ``models_rank{r}.json``: per model, the parameters without a gradient, the
largest difference of the averaged DDP gradient from the one-process gradient (relative to its largest value), and
whether the ranks hold identical weights after the steps (or the error that stopped it); and
``windows_rank{r}.json``: the windows a ChunkAwareSampler gives it (ranks read from the process group)."""

import copy
import datetime
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from convlstm import create_model, list_models
from convlstm.data import ChunkAwareSampler, Recording, WindowDataset
from convlstm.models import PredNet, PredRNNv2
from tests.models.registry_cases import HORIZON, build, example_input, run

#: Models above this many parameters are left to the slow test, to keep CI short: the full-width configurations
#: (Shi 2015's, OpenSTL's, PredNet KITTI, FC-LSTM 2048) share their code with a smaller registered sibling that
#: CI does run (encoder_forecaster_tiny and the radar models, next_frame_convlstm, prednet_tiny, fc_lstm_tiny).
CI_MAX_PARAMETERS = 2_000_000


def parameter_count(name: str) -> int:
    """Parameters of the registered model ``name``, counted without allocating them."""
    with torch.device("meta"):
        return sum(p.numel() for p in create_model(name).parameters())


BATCH = 2  # one sequence per rank


class TrainingOutput(nn.Module):
    """What each model's task trains on, as a forward DDP can hook: PredNet's per-layer errors (PredNetTask), the
    U-Net's logits (SegmentationTask), PredRNN-V2's forecasts and memory increments (ForecastingTask with
    decouple_beta), an ensemble's members (ForecastingTask with ensemble_members), forecasts for the rest
    (ForecastingTask)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(self.model, PredNet):
            errors, _ = self.model.run(x, output_mode="error")
            return errors
        if isinstance(self.model, PredRNNv2):
            # PredRNN-V2 trains with its decoupling loss (ForecastingTask's decouple_beta), the adapter's only use.
            forecast, increments = self.model.forward_with_increments(x, HORIZON)
            return torch.cat([forecast.flatten(1), *(delta.flatten(1) for delta in increments)], dim=1)
        if getattr(getattr(self.model, "config", None), "noise_channels", 0):
            # An ensemble trains on its members (ForecastingTask with ensemble_members): its noise reaches only them.
            members: Tensor = self.model.ensemble(x, HORIZON, members=2, generator=torch.Generator().manual_seed(0))
            return members
        return run(self.model, x)


def _loss(output: Tensor) -> Tensor:
    """A mean over the batch, so that DDP's average of the halves' gradients is the whole batch's gradient."""
    return (output - 0.25).square().mean()


def _check_model(name: str, rank: int, world: int) -> dict[str, Any]:
    # float64: what is checked is DDP's averaging of the halves. In float32 the two orders of summation differ by
    # rounding that a norm layer's cancelling terms can blow up to 1e-3..1e-2 of the largest gradient with torch's
    # portable (non-vectorised) kernels; in float64 the same blow-up stays far below the test's bound.
    model = TrainingOutput(build(name).train().double())  # seeded: the same weights on every rank
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            # A BatchNorm's batch statistics are each process's own (SyncBatchNorm shares them): half a batch's
            # differ from the whole batch's by design. With the running statistics, what is compared is DDP's.
            module.eval()
    reference = copy.deepcopy(model) if rank == 0 else None
    x = torch.cat([example_input(model.model, seed=s) for s in range(BATCH)]).double()  # (BATCH, T, C, H, W)
    ddp = DistributedDataParallel(model, find_unused_parameters=False)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
    half = x.chunk(world)[rank]
    result: dict[str, Any] = {}
    for step in range(2):  # DDP reports a parameter left out of a backward pass at the next forward
        optimizer.zero_grad(set_to_none=True)
        _loss(ddp(half)).backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None]
        result.setdefault("without_grad", []).extend(missing)
        if step == 0 and reference is not None:
            _loss(reference(x)).backward()
            worst = 0.0
            for p, q in zip(model.parameters(), reference.parameters(), strict=True):
                if p.grad is None or q.grad is None:
                    continue
                scale = max(q.grad.abs().max().item(), 1e-12)
                worst = max(worst, (p.grad - q.grad).abs().max().item() / scale)
            result["grad_difference"] = worst
        optimizer.step()
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    result["ranks_equal"] = all(torch.equal(g, gathered[0]) for g in gathered)
    return result


def main(out: Path, everything: bool) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=120))
    rank, world = dist.get_rank(), dist.get_world_size()
    results: dict[str, Any] = {}
    for name in list_models():
        count = parameter_count(name)
        if count == 0 or (count > CI_MAX_PARAMETERS and not everything):
            continue  # the baselines have nothing to train
        try:
            results[name] = _check_model(name, rank, world)
        except Exception as error:  # recorded, so the test names the model; DDP may be unusable after it
            results[name] = {"error": f"{type(error).__name__}: {error}"}
            break
    (out / f"models_rank{rank}.json").write_text(json.dumps(results, indent=1))
    # The windows this rank's ChunkAwareSampler picks, with the ranks read from the process group.
    frames = np.zeros((50, 1, 2, 2), dtype=np.float32)
    windows = WindowDataset([Recording(name="zeros", frames=frames)], context_frames=3, target_frames=2)
    share = list(ChunkAwareSampler(windows, chunk_frames=8, seed=0))
    (out / f"windows_rank{rank}.json").write_text(json.dumps(share))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), "--all" in sys.argv[2:])
