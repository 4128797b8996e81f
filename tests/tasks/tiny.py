"""Tiny real models and in-memory datasets for the task tests (no dependence on the model families in progress)."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from convlstm import ConvLSTM, ConvLSTMCell
from convlstm.models.base import ForecastingModel, config_from_arguments, next_input

QUIET_TRAINER: dict[str, Any] = {
    "accelerator": "cpu",
    "devices": 1,
    "logger": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "num_sanity_val_steps": 0,
}

for _name in ("lightning.pytorch", "lightning.fabric", "lightning"):
    logging.getLogger(_name).setLevel(logging.ERROR)


@dataclasses.dataclass
class TinyForecasterConfig:
    channels: int = 1
    hidden: int = 4


class TinyForecaster(ForecastingModel):
    """One ConvLSTM layer and a 1x1 head; feeds its predictions (or, where teacher forcing says, the truth) back.

    Records the ``teacher_forcing`` mask of each call in :attr:`seen_masks` so tests can check what the task sent.
    """

    family = "tests_tiny_forecaster"
    config_class = TinyForecasterConfig

    def __init__(self, channels: int = 1, hidden: int = 4) -> None:
        super().__init__()
        self.config = config_from_arguments(TinyForecasterConfig, locals())
        self.rnn = ConvLSTM(channels, hidden, kernel_size=3)
        self.head = nn.Conv2d(hidden, channels, 1)
        self.seen_masks: list[Tensor | None] = []

    def forward(
        self,
        context: Tensor,
        horizon: int | None = None,
        targets: Tensor | None = None,
        teacher_forcing: Tensor | None = None,
    ) -> Tensor:
        horizon, mask = self.check_forecast_arguments(
            context, horizon, targets, teacher_forcing, channels=self.config.channels
        )
        if self.training:
            self.seen_masks.append(None if mask is None else mask.detach().cpu().clone())
        out, state = self.rnn(context)
        frame = self.head(out[:, -1])  # (B, C, H, W)
        predictions = [frame]
        for k in range(horizon - 1):
            out, state = self.rnn(next_input(frame, k, targets, mask).unsqueeze(1), state)
            frame = self.head(out[:, -1])
            predictions.append(frame)
        return torch.stack(predictions, dim=1)


class TinySegmenter(nn.Module):
    """ConvLSTM + 1x1 head to K logits per pixel; returns (logits, state) like ConvLSTMUNet."""

    def __init__(self, channels: int = 1, hidden: int = 4, num_classes: int = 2) -> None:
        super().__init__()
        self.rnn = ConvLSTM(channels, hidden, kernel_size=3)
        self.head = nn.Conv2d(hidden, num_classes, 1)

    def forward(self, frames: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        out, state = self.rnn(frames, state)
        logits = self.head(out.flatten(0, 1)).unflatten(0, out.shape[:2])  # (B, T, K, H, W)
        return logits, state


class TinyPredNet(nn.Module):
    """A two-level stand-in following the PredNet protocol of convlstm.tasks.prednet.

    At step t: prediction = sigmoid(head(R)) from the representation R before frame t is seen; layer-0 error
    E_0 = [relu(x - pred), relu(pred - x)]; layer-1 error = relu(conv(avgpool(E_0))); R is updated by a ConvLSTM
    cell from E_0. From ``extrap_start_time`` on, x is the prediction itself.
    """

    num_layers = 2

    def __init__(self, channels: int = 1, hidden: int = 4) -> None:
        super().__init__()
        self.cell = ConvLSTMCell(2 * channels, hidden, 3)
        self.head = nn.Conv2d(hidden, channels, 3, padding=1)
        self.upper = nn.Conv2d(2 * channels, channels, 1)

    def run(
        self, frames: Tensor, state: Any = None, *, output_mode: str = "error", extrap_start_time: int | None = None
    ) -> tuple[Tensor, Any]:
        """PredNet's calling convention (convlstm.models.prednet): (output, state); the state is not kept here."""
        return self(frames, output_mode=output_mode, extrap_start_time=extrap_start_time), None

    def forward(self, frames: Tensor, output_mode: str = "error", extrap_start_time: int | None = None) -> Tensor:
        batch, steps, _, h, w = frames.shape
        state = None
        hidden = frames.new_zeros(batch, self.cell.hidden_channels, h, w)
        predictions, errors = [], []
        for t in range(steps):
            prediction = torch.sigmoid(self.head(hidden))
            x = frames[:, t] if extrap_start_time is None or t < extrap_start_time else prediction
            e0 = torch.cat([F.relu(x - prediction), F.relu(prediction - x)], dim=1)
            e1 = F.relu(self.upper(F.avg_pool2d(e0, 2)))
            errors.append(torch.stack([e0.mean((1, 2, 3)), e1.mean((1, 2, 3))], dim=-1))
            hidden, cell = self.cell(e0, state)
            state = (hidden, cell)
            predictions.append(prediction)
        if output_mode == "error":
            return torch.stack(errors, dim=1)  # (B, T, L)
        if output_mode == "prediction":
            return torch.stack(predictions, dim=1)  # (B, T, C, H, W)
        raise ValueError(f"output_mode must be 'error' or 'prediction', got {output_mode!r}")


class LastFrame(nn.Module):
    """Persistence: every predicted frame is the last context frame."""

    def forward(self, context: Tensor, horizon: int | None = None) -> Tensor:
        return context[:, -1:].expand(-1, horizon or 1, *context.shape[2:])


class TinyEnsemble(nn.Module):
    """Persistence plus Gaussian noise of a learned size: ``ensemble(context, horizon, members=M)`` gives
    (B, M, horizon, C, H, W); forward gives the noise-free forecast. Records the ``members`` of each call."""

    def __init__(self, spread: float = 0.05) -> None:
        super().__init__()
        self.spread = nn.Parameter(torch.tensor(spread))
        self.seen_members: list[int] = []

    def forward(self, context: Tensor, horizon: int | None = None) -> Tensor:
        return context[:, -1:].expand(-1, horizon or 1, *context.shape[2:]) + 0.0 * self.spread

    def ensemble(self, context: Tensor, horizon: int | None = None, *, members: int = 2) -> Tensor:
        self.seen_members.append(members)
        mean = self(context, horizon).unsqueeze(1)  # (B, 1, horizon, C, H, W)
        noise = torch.randn(mean.shape[0], members, *mean.shape[2:], device=mean.device)
        return mean + self.spread * noise


def noisy_static_sequences(n: int, *, noise: float, size: int = 8, seed: int = 0) -> ItemList:
    """Sequences of one random frame, whose 2 target frames are the frame plus Gaussian noise of std ``noise``: a
    well-spread ensemble from the last frame has members that scatter by ``noise``."""
    generator = torch.Generator().manual_seed(seed)
    items = []
    for _ in range(n):
        frame = torch.rand(1, 1, size, size, generator=generator)
        target = frame + noise * torch.randn(2, 1, size, size, generator=generator)
        items.append({"context": frame.expand(3, -1, -1, -1).clone(), "target": target})
    return ItemList(items)


class ItemList(Dataset[dict[str, Tensor]]):
    """A map-style dataset over a list of item dicts."""

    def __init__(self, items: list[dict[str, Tensor]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return self.items[index]


def static_sequences(n: int, *, context: int = 3, target: int = 2, size: int = 8, seed: int = 0) -> ItemList:
    """Sequences of one random frame repeated: a forecaster learns to copy it."""
    generator = torch.Generator().manual_seed(seed)
    items = []
    for _ in range(n):
        frame = torch.rand(1, 1, size, size, generator=generator)
        items.append(
            {"context": frame.expand(context, -1, -1, -1).clone(), "target": frame.expand(target, -1, -1, -1).clone()}
        )
    return ItemList(items)


def flicker_videos(n: int, *, steps: int = 8, size: int = 8, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Nearly static videos (n, steps, 1, size, size); odd ones flicker with strong noise from a random onset on,
    and those frames are labelled 1 in the (n, steps) labels."""
    g = torch.Generator().manual_seed(seed)
    frames = torch.rand(n, 1, 1, size, size, generator=g).expand(n, steps, 1, size, size).clone()
    frames += 0.01 * torch.rand(frames.shape, generator=g)
    labels = torch.zeros(n, steps, dtype=torch.int64)
    for i in range(1, n, 2):
        onset = int(torch.randint(3, steps - 1, (1,), generator=g))
        frames[i, onset:] += 0.5 * torch.rand(frames[i, onset:].shape, generator=g)
        labels[i, onset:] = 1
    return frames.clamp(0, 1), labels


def loader(dataset: Dataset[Any], batch_size: int = 4, shuffle: bool = False) -> DataLoader[Any]:
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(0))
