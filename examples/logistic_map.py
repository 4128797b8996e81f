"""Why recurrence matters, on the logistic map x -> 3.5 x (1 - x).

Part 1 iterates the map from a few starting points and finds the period-4 cycle they all fall into.

Part 2 hides the state: at each step a model sees only which fifth of [0, 1] the value x_n lies in (y_n = floor(5 x_n))
and must predict the next value x_{n+1}. On the cycle 0.83 and 0.875 fall in the same fifth but are followed by 0.50
and 0.38, so no function of y_n alone can tell them apart: a one-step model without state is bounded below by the
conditional mean E[x_{n+1} | y_n], computed exactly on the test sequences. A ConvLSTM from this library (1x1 kernels
over a one-pixel 1-D input) that reads y_0 .. y_n remembers the phase of the cycle and goes well below that bound.
The last row is the bound for any predictor of the whole observed history, E[x_{n+1} | y_0 .. y_n], also computed on
the test sequences (an optimistic one: a history seen once is predicted perfectly). Starting points are random, so
the transients are part of the task, not only the cycle; the first predictions, made from one or two observations,
are hard for every model, hence the second column, which scores only n >= 4.

With the full state x_n a one-step model would need no memory at all (the map is deterministic): memory is what
makes up for a partial observation.

    python examples/logistic_map.py [--steps 1000] [--seed 0] [--output docs/images/logistic_map.png] [--no-plot]
"""

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from convlstm import ConvLSTM

RATE = 3.5
LEVELS = 5  # y_n = floor(LEVELS * x_n): 0.8269 and 0.8750 share a level, 0.3828 and 0.5009 do not
LENGTH = 32  # values x_0 .. x_31 per sequence: 31 predictions
WARMUP = 4  # the "n >= 4" column scores only predictions of x_{n+1} made from y_0 .. y_n with n >= WARMUP
DEMO_STARTS = (0.05, 0.3, 0.6, 0.95)
DEMO_SEQUENCE_START = 0.07  # the held-out sequence drawn in the figure


def logistic_map(x: Tensor, rate: float = RATE) -> Tensor:
    """One step f(x) = rate * x * (1 - x), elementwise."""
    return rate * x * (1 - x)


def iterate(x0: Tensor, length: int, rate: float = RATE) -> Tensor:
    """Orbits x_0 .. x_{length-1} of every starting point: (B,) -> (B, length), in the dtype of x0."""
    values = [x0]
    for _ in range(length - 1):
        values.append(logistic_map(values[-1], rate))
    return torch.stack(values, dim=1)


def find_cycle(
    rate: float = RATE, x0: float = 0.5, burn_in: int = 2000, max_period: int = 64, tol: float = 1e-10
) -> list[float]:
    """The attracting cycle reached from x0: iterate burn_in steps, then return the shortest orbit that closes.

    Returns:
        The cycle in orbit order, starting at its smallest value.

    Raises:
        ValueError: if no orbit of period <= max_period closes within tol (no attracting cycle, e.g. chaos).
    """
    x = torch.tensor(x0, dtype=torch.float64)
    for _ in range(burn_in):
        x = logistic_map(x, rate)
    orbit = iterate(x.reshape(1), max_period + 1, rate)[0]
    for period in range(1, max_period + 1):
        if abs(orbit[period] - orbit[0]) < tol:
            cycle = orbit[:period]
            start = int(cycle.argmin())
            return torch.cat([cycle[start:], cycle[:start]]).tolist()
    raise ValueError(f"no cycle of period <= max_period={max_period} within tol={tol} at rate={rate} from x0={x0}")


def steps_to_cycle(x0: float, cycle: list[float], tol: float = 1e-6, limit: int = 1000, rate: float = RATE) -> int:
    """The first n from which every x_n (up to limit) lies within tol of a point of the cycle."""
    orbit = iterate(torch.tensor([x0], dtype=torch.float64), limit, rate)[0]
    distance = (orbit.unsqueeze(1) - torch.tensor(cycle, dtype=torch.float64)).abs().amin(dim=1)  # (limit,)
    far = (distance >= tol).nonzero()
    return 0 if len(far) == 0 else int(far[-1]) + 1


def observe(x: Tensor, levels: int = LEVELS) -> Tensor:
    """The partial observation: which of `levels` equal parts of [0, 1] each value lies in (int64, same shape)."""
    return (x * levels).floor().clamp(0, levels - 1).long()


def make_sequences(batch: int, generator: torch.Generator, length: int = LENGTH) -> tuple[Tensor, Tensor]:
    """Orbits from uniform random starts: values (B, length) float64 and their observations (B, length) int64."""
    x = iterate(torch.rand(batch, generator=generator, dtype=torch.float64), length)
    return x, observe(x)


def stateless_bound(observed: Tensor, target: Tensor, levels: int = LEVELS) -> float:
    """Least mean squared error of any function of the current observation alone on this data: the error of the
    conditional mean of the target per observed level (pooled over time steps).

    Shape:
        observed: (N, ...) int64 levels y_n; target: the same shape, x_{n+1}.
    """
    y, t = observed.flatten(), target.flatten().double()
    count = torch.bincount(y, minlength=levels).double()
    mean = torch.zeros(levels, dtype=torch.float64).index_add_(0, y, t) / count.clamp(min=1)
    return float((t - mean[y]).square().mean())


def history_bound(observed: Tensor, target: Tensor, start: int = 0) -> float:
    """Least mean squared error of any function of the observed history y_0 .. y_n on this data, over the steps
    n >= start: per step, the error of the conditional mean of x_{n+1} among sequences with the same history.

    Shape:
        observed: (B, T) int64 levels y_0 .. y_{T-1}; target: (B, T), x_1 .. x_T.
    """
    group = torch.zeros(observed.shape[0], dtype=torch.int64)  # history id; exact, no hashing
    total, count = 0.0, 0
    for n in range(observed.shape[1]):
        _, group = torch.unique(group * (int(observed.max()) + 1) + observed[:, n], return_inverse=True)
        if n < start:
            continue
        t = target[:, n].double()
        sizes = torch.bincount(group).double()
        mean = torch.zeros(len(sizes), dtype=torch.float64).index_add_(0, group, t) / sizes
        total += float((t - mean[group]).square().sum())
        count += len(t)
    return total / count


class OneStepMLP(nn.Module):
    """Predicts x_{n+1} from y_n alone, the same function at every step (no state).

    Shape:
        observed: (B, T) int64 levels -> (B, T) predictions.
    """

    def __init__(self, hidden: int = 16, levels: int = LEVELS) -> None:
        super().__init__()
        self.levels = levels
        self.net = nn.Sequential(nn.Linear(levels, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, observed: Tensor) -> Tensor:
        return self.net(nn.functional.one_hot(observed, self.levels).float()).squeeze(-1)


class RecurrentPredictor(nn.Module):
    """Predicts x_{n+1} from y_0 .. y_n with a ConvLSTM (1x1 kernels on a one-pixel 1-D signal) and a 1x1 head.

    Shape:
        observed: (B, T) int64 levels -> (B, T) predictions; output n has seen observations 0 .. n only.
    """

    def __init__(self, hidden: int = 16, levels: int = LEVELS) -> None:
        super().__init__()
        self.levels = levels
        self.rnn = ConvLSTM(levels, hidden, kernel_size=1, spatial_dims=1)
        self.head = nn.Conv1d(hidden, 1, kernel_size=1)

    def forward(self, observed: Tensor) -> Tensor:
        frames = nn.functional.one_hot(observed, self.levels).float().unsqueeze(-1)  # (B, T, levels, 1)
        hidden, _ = self.rnn(frames)  # (B, T, hidden, 1)
        return self.head(hidden.flatten(0, 1)).unflatten(0, observed.shape).flatten(2).squeeze(-1)


def train(model: nn.Module, steps: int, generator: torch.Generator, batch: int = 64, lr: float = 3e-2) -> float:
    """Adam with a cosine learning rate on fresh random sequences every step; returns the last batch loss."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        x, y = make_sequences(batch, generator)
        loss = (model(y[:, :-1]) - x[:, 1:].float()).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return float(loss.detach())


@dataclass
class Results:
    """Next-value MSE on the test sequences: over all steps, and from step WARMUP on."""

    cycle: list[float]
    stateless_bound: tuple[float, float]
    one_step_mlp: tuple[float, float]
    recurrent: tuple[float, float]
    history_bound: tuple[float, float]
    train_seconds: float


def _mse(prediction: Tensor, target: Tensor) -> tuple[float, float]:
    error = (prediction.double() - target).square()  # (B, T)
    return float(error.mean()), float(error[:, WARMUP:].mean())


def run(steps: int = 1000, seed: int = 0, test_sequences: int = 2048) -> tuple[Results, OneStepMLP, RecurrentPredictor]:
    """Finds the cycle, trains both models for `steps` Adam steps and scores them on held-out sequences."""
    generator = torch.Generator().manual_seed(seed)
    x, y = make_sequences(test_sequences, generator)
    observed, target = y[:, :-1], x[:, 1:]
    torch.manual_seed(seed)
    mlp, recurrent = OneStepMLP(), RecurrentPredictor()
    start = time.perf_counter()
    train(mlp, steps, generator)
    train(recurrent, steps, generator)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        mlp_mse, recurrent_mse = _mse(mlp(observed), target), _mse(recurrent(observed), target)
    results = Results(
        cycle=find_cycle(),
        stateless_bound=(stateless_bound(observed, target), stateless_bound(observed[:, WARMUP:], target[:, WARMUP:])),
        one_step_mlp=mlp_mse,
        recurrent=recurrent_mse,
        history_bound=(history_bound(observed, target), history_bound(observed, target, start=WARMUP)),
        train_seconds=seconds,
    )
    return results, mlp, recurrent


def report(results: Results, steps: int) -> str:
    """The printed summary: the cycle, convergence to it, and the MSE table."""
    cycle = results.cycle
    multiplier = abs(math.prod(RATE * (1 - 2 * c) for c in cycle))  # |(f^p)'| on the cycle, by the chain rule
    reach = ", ".join(str(steps_to_cycle(x0, cycle)) for x0 in DEMO_STARTS)
    starts = ", ".join(f"{x0:.2f}" for x0 in DEMO_STARTS)
    rows = [
        ("best stateless, E[x_{n+1} | y_n]", results.stateless_bound),
        ("one-step MLP (sees y_n)", results.one_step_mlp),
        ("ConvLSTM (sees y_0 .. y_n)", results.recurrent),
        ("best with memory, E[x_{n+1} | y_0 .. y_n]", results.history_bound),
    ]
    lines = [
        f"x -> {RATE} x (1 - x) has a period-{len(cycle)} cycle: "
        + " -> ".join(f"{c:.5f}" for c in cycle)
        + f" (|(f^{len(cycle)})'| = {multiplier:.3f}: attracting)",
        f"orbits from x0 = {starts} stay within 1e-6 of it from step {reach} on",
        "",
        f"next-value MSE on held-out sequences; the models see only y_n = floor({LEVELS} x_n)",
        f"{'predictor':<44}{'all steps':>11}{f'n >= {WARMUP}':>11}",
    ]
    lines += [f"{name:<44}{every:>11.5f}{late:>11.5f}" for name, (every, late) in rows]
    lines.append(f"(each model trained {steps} Adam steps; {results.train_seconds:.1f} s in all)")
    return "\n".join(lines)


def plot(results: Results, mlp: OneStepMLP, recurrent: RecurrentPredictor, path: Path) -> None:
    """Saves the figure: orbits falling into the cycle, and both models on a held-out partially observed sequence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    orbits = iterate(torch.tensor(DEMO_STARTS, dtype=torch.float64), 21)
    for x0, orbit in zip(DEMO_STARTS, orbits, strict=True):
        left.plot(orbit.numpy(), marker=".", linewidth=0.8, markersize=4, label=f"x0 = {x0}")
    label_height = 0.0
    for c in sorted(results.cycle):
        left.axhline(c, color="grey", linestyle=":", linewidth=0.8)
        label_height = max(c, label_height + 0.06)  # keeps the labels of 0.8269 and 0.8750 apart
        left.text(20.6, label_height, f"{c:.4f}", fontsize=7, va="center")
    left.set(xlabel="n", ylabel="$x_n$", ylim=(0, 1), title=f"$x_{{n+1}} = {RATE}\\,x_n(1-x_n)$ falls into a 4-cycle")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.legend(fontsize=7, loc="lower right")

    x = iterate(torch.tensor([DEMO_SEQUENCE_START], dtype=torch.float64), LENGTH)[0]
    y = observe(x)
    with torch.no_grad():
        from_mlp, from_recurrent = mlp(y[None, :-1])[0], recurrent(y[None, :-1])[0]  # predictions of x_1 .. x_31
    for n, level in enumerate(y.tolist()):
        right.fill_between([n - 0.4, n + 0.4], level / LEVELS, (level + 1) / LEVELS, color="0.85", linewidth=0)
    right.plot(x, "k.-", linewidth=0.8, label="true $x_n$ (hidden)")
    steps = torch.arange(1, LENGTH)
    right.plot(steps, from_mlp, "s", color="tab:orange", markersize=4, fillstyle="none", label="one-step MLP")
    right.plot(steps, from_recurrent, "x", color="tab:blue", markersize=5, label="ConvLSTM")
    right.set(
        xlabel="n", ylim=(0, 1), title=f"the models see only the grey fifth of [0, 1] (x0 = {DEMO_SEQUENCE_START})"
    )
    right.legend(fontsize=7, loc="lower right", ncol=3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> Results:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000, help="Adam steps for each model")
    parser.add_argument("--seed", type=int, default=0, help="seed for the data and the initial weights")
    parser.add_argument("--output", type=Path, default=Path("docs/images/logistic_map.png"), help="figure to write")
    parser.add_argument("--no-plot", action="store_true", help="skip the figure")
    args = parser.parse_args(argv)
    if args.steps < 0:
        parser.error(f"--steps must be >= 0, got {args.steps}")
    results, mlp, recurrent = run(args.steps, args.seed)
    print(report(results, args.steps))
    if not args.no_plot:
        plot(results, mlp, recurrent, args.output)
        print(f"figure: {args.output}")
    return results


if __name__ == "__main__":
    main()
