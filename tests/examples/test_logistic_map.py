"""examples/logistic_map.py: the cycle it finds, the bounds it reports, and the claim that memory beats them."""

import importlib.util
import itertools
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from numpy.polynomial import Polynomial

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "logistic_map.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("logistic_map_example", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


lm = _load()


def _newton(g: Callable[[float], float], x: float, steps: int = 50) -> float:
    """Polishes a root of ``g`` (a central-difference derivative is plenty near a simple root)."""
    for _ in range(steps):
        h = 1e-7
        slope = (g(x + h) - g(x - h)) / (2 * h)
        x -= g(x) / slope
    return x


def test_cycle_is_the_attracting_period_4_orbit_among_the_roots_of_f4_minus_x() -> None:
    cycle = lm.find_cycle()
    assert len(cycle) == 4
    # Independently: the period-4 points are the real roots of f(f(f(f(x)))) - x that are not roots of f(f(x)) - x.
    # Dividing the first polynomial by the second removes the period-1 and period-2 roots exactly, instead of
    # telling them apart by distance after a degree-16 root finder (whose accuracy depends on the LAPACK build).
    r = 3.5
    x = Polynomial([0.0, 1.0])

    def f(p: Polynomial) -> Polynomial:
        return r * p * (1 - p)

    quotient, _ = divmod(f(f(f(f(x)))) - x, f(f(x)) - x)
    roots = quotient.roots()
    # The 12 roots of the quotient are simple: 4 real ones, the rest at least 1e-3 off the real axis.
    rough = roots[np.abs(roots.imag) < 1e-6].real

    def g(start: float) -> float:  # f^4(y) - y, evaluated by iterating in plain floats
        y = start
        for _ in range(4):
            y = r * y * (1 - y)
        return y - start

    period_4 = sorted(_newton(g, float(y)) for y in rough)
    # Newton-polished float64 roots and the iterated cycle agree to a few ulps of numbers below 1.
    np.testing.assert_allclose(sorted(cycle), period_4, atol=1e-9)
    # In orbit order, each point maps to the next, in plain floats.
    for a, b in itertools.pairwise([*cycle, cycle[0]]):
        assert r * a * (1 - a) == pytest.approx(b, abs=1e-12)
    assert cycle[0] == min(cycle)
    derivative = np.prod([r * (1 - 2 * c) for c in cycle])
    assert abs(derivative) < 1  # attracting, so iterating finds it


@pytest.mark.parametrize("rate", [2.8, 3.2])
def test_find_cycle_at_other_rates_matches_closed_forms(rate: float) -> None:
    cycle = lm.find_cycle(rate)
    if rate < 3:
        np.testing.assert_allclose(cycle, [1 - 1 / rate], atol=1e-9)
    else:
        root = np.sqrt((rate + 1) * (rate - 3))
        np.testing.assert_allclose(cycle, [(rate + 1 - root) / (2 * rate), (rate + 1 + root) / (2 * rate)], atol=1e-9)


def test_find_cycle_rejects_chaos() -> None:
    with pytest.raises(ValueError, match="max_period"):
        lm.find_cycle(3.9)


def test_orbits_reach_the_cycle() -> None:
    cycle = lm.find_cycle()
    for x0 in (0.05, 0.3, 0.6, 0.95):
        n = lm.steps_to_cycle(x0, cycle)
        x = x0
        for _ in range(n + 200):
            x = 3.5 * x * (1 - x)
        assert min(abs(x - c) for c in cycle) < 1e-6
        assert 0 < n < 200


def test_observation_is_ambiguous_on_the_cycle() -> None:
    cycle = lm.find_cycle()
    levels = lm.observe(torch.tensor(cycle, dtype=torch.float64)).tolist()
    assert levels == [int(5 * c) for c in cycle]
    assert len(set(levels)) == 3
    # The two cycle points sharing a level are followed by different values: the premise of the whole example.
    shared = [i for i in range(4) if levels.count(levels[i]) == 2]
    assert len(shared) == 2
    assert abs(cycle[(shared[0] + 1) % 4] - cycle[(shared[1] + 1) % 4]) > 0.1
    assert lm.observe(torch.tensor([0.0, 0.1999, 0.2, 0.999, 1.0])).tolist() == [0, 0, 1, 4, 4]


def _grouped_mse(keys: list, values: list[float]) -> float:
    groups: dict = {}
    for k, v in zip(keys, values, strict=True):
        groups.setdefault(k, []).append(v)
    total = sum(sum((v - sum(vs) / len(vs)) ** 2 for v in vs) for vs in groups.values())
    return total / len(values)


def test_stateless_bound_is_the_conditional_mean_error_and_no_function_of_y_beats_it() -> None:
    x, y = lm.make_sequences(40, torch.Generator().manual_seed(3), length=12)
    observed, target = y[:, :-1], x[:, 1:]
    bound = lm.stateless_bound(observed, target)
    assert bound == pytest.approx(_grouped_mse(observed.flatten().tolist(), target.flatten().tolist()), rel=1e-12)
    generator = torch.Generator().manual_seed(4)
    for _ in range(20):
        table = torch.rand(5, generator=generator, dtype=torch.float64)
        assert (table[observed] - target).square().mean().item() >= bound


def test_history_bound_groups_by_the_whole_prefix() -> None:
    x, y = lm.make_sequences(60, torch.Generator().manual_seed(5), length=10)
    observed, target = y[:, :-1], x[:, 1:]
    for start in (0, 4):
        keys = [(n, *observed[b, : n + 1].tolist()) for b in range(60) for n in range(start, 9)]
        values = [target[b, n].item() for b in range(60) for n in range(start, 9)]
        assert lm.history_bound(observed, target, start=start) == pytest.approx(_grouped_mse(keys, values), rel=1e-12)
    assert lm.history_bound(observed, target) <= lm.stateless_bound(observed, target)


def test_recurrent_model_is_causal_and_the_one_step_model_is_stateless() -> None:
    torch.manual_seed(0)
    _, y = lm.make_sequences(3, torch.Generator().manual_seed(6))
    changed = y.clone()
    changed[:, 10] = (changed[:, 10] + 1) % 5
    recurrent, mlp = lm.RecurrentPredictor(), lm.OneStepMLP()
    with torch.no_grad():
        before, after = recurrent(y), recurrent(changed)
        torch.testing.assert_close(before[:, :10], after[:, :10], rtol=0, atol=0)
        assert not torch.equal(before[:, 10:], after[:, 10:])
        order = torch.randperm(y.shape[1])
        torch.testing.assert_close(mlp(y)[:, order], mlp(y[:, order]))


def test_memory_beats_the_stateless_bound_after_short_training() -> None:
    results, _, _ = lm.run(steps=300, seed=0, test_sequences=512)
    for column in (0, 1):
        stateless, mlp = results.stateless_bound[column], results.one_step_mlp[column]
        recurrent, history = results.recurrent[column], results.history_bound[column]
        assert mlp >= stateless * (1 - 1e-6)  # a bound, whatever the training
        assert mlp < 1.05 * stateless  # ...that the trained one-step model does reach
        assert recurrent >= history * (1 - 1e-6)
        assert history < 0.5 * stateless
    assert results.recurrent[0] < 0.8 * results.stateless_bound[0]
    assert results.recurrent[1] < 0.5 * results.stateless_bound[1]


def test_script_writes_the_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    output = tmp_path / "figures" / "logistic_map.png"
    lm.main(["--steps", "3", "--output", str(output)])
    data = output.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) < 100_000
    printed = capsys.readouterr().out
    assert "period-4 cycle" in printed
    assert "ConvLSTM" in printed
    skipped = tmp_path / "none.png"
    lm.main(["--steps", "0", "--no-plot", "--output", str(skipped)])
    assert not skipped.exists()
