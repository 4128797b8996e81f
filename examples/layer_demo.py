"""Trains a small ConvLSTM for a few seconds to predict the next frame of a moving square, then prints what it
learned: its one-step error against copying the last frame (persistence), on sequences it never saw.

    python examples/layer_demo.py [--seconds 20]
"""

import argparse
import time

import torch
from torch import Tensor, nn

from convlstm import ConvLSTM


def moving_squares(batch: int, steps: int, size: int, generator: torch.Generator) -> Tensor:
    """(B, T, 1, size, size) frames of a 3x3 square moving at a constant velocity of up to 2 px/frame, wrapping."""
    start = torch.randint(0, size, (batch, 2), generator=generator)
    velocity = torch.randint(-2, 3, (batch, 2), generator=generator)
    t = torch.arange(steps).view(1, steps, 1)
    centre = (start.unsqueeze(1) + velocity.unsqueeze(1) * t) % size  # (B, T, 2)
    grid = torch.arange(size)
    dy = (grid.view(1, 1, size) - centre[..., :1] + size // 2) % size - size // 2
    dx = (grid.view(1, 1, size) - centre[..., 1:] + size // 2) % size - size // 2
    frames = (dy.abs() <= 1).unsqueeze(-1) & (dx.abs() <= 1).unsqueeze(-2)
    return frames.float().unsqueeze(2)


class NextFrame(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = ConvLSTM(1, 16, kernel_size=5)
        self.head = nn.Conv2d(16, 1, kernel_size=1)

    def forward(self, frames: Tensor) -> Tensor:
        hidden, _ = self.rnn(frames)  # (B, T, 16, H, W)
        return torch.sigmoid(self.head(hidden.flatten(0, 1))).unflatten(0, frames.shape[:2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="training time budget")
    args = parser.parse_args()
    torch.manual_seed(0)
    train_gen, test_gen = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    model = NextFrame()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < args.seconds:
        frames = moving_squares(16, 8, 16, train_gen)
        loss = nn.functional.binary_cross_entropy(model(frames[:, :-1]), frames[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        steps += 1
    with torch.no_grad():
        frames = moving_squares(256, 8, 16, test_gen)
        prediction = model(frames[:, :-1])
        # From the third frame on, the velocity is observable: score only those predictions.
        model_mse = (prediction[:, 2:] - frames[:, 3:]).square().mean().item()
        persistence_mse = (frames[:, 2:-1] - frames[:, 3:]).square().mean().item()
    print(f"trained {steps} steps in {args.seconds:.0f} s")
    print(
        f"next-frame MSE per pixel on unseen sequences: ConvLSTM {model_mse:.5f}, copy-last-frame {persistence_mse:.5f}"
    )
    print(
        f"the ConvLSTM learned the motion: {persistence_mse / max(model_mse, 1e-12):.1f}x lower error than persistence"
    )


if __name__ == "__main__":
    main()
