"""benchmarks/learned_motion.py on hand-made run directories: it reads the advection head's velocities and compares
them with pysteps' Lucas-Kanade motion."""

import sys
from pathlib import Path

import pytest
import torch

from convlstm.baselines.optical_flow import OpticalFlow
from convlstm.experiment import RunDir, build_dataset, load_recipe
from convlstm.models import create_model
from tests.benchmarks.scripts import BENCHMARKS, run_benchmark

pytest.importorskip("pysteps")
sys.path.insert(0, str(BENCHMARKS))
from learned_motion import wet_mean

HORIZON = 3


def _run_dir(tmp_path: Path, name: str, **model_args: object) -> tuple[Path, torch.nn.Module]:
    recipe = load_recipe(
        "nowcasting",
        ["data.args.image_size=32", "data.test_sequences=3", f"data.target_frames={HORIZON}", "data.num_workers=0"],
    )
    directory = tmp_path / "run"
    RunDir(directory).create(recipe, resume=False)
    model = create_model(name, hidden_channels=[4, 4], default_horizon=HORIZON, **model_args)
    model.save_pretrained(directory / "model")
    return directory, model


def _table(stdout: str) -> list[tuple[float, float]]:
    rows = [line.strip("|").split("|") for line in stdout.splitlines() if line.startswith("| ") and "lead" not in line]
    return [(float(slope), float(cosine)) for _, slope, cosine in rows]


def test_a_uniform_velocity_is_compared_with_lucas_kanade_at_every_lead_time(tmp_path: Path) -> None:
    directory, model = _run_dir(tmp_path, "radar_convlstm_advection")
    with torch.no_grad():  # every pixel moves 1 px per frame to the right, whatever the state
        model.head.velocity.weight.zero_()
        model.head.velocity.bias.copy_(torch.tensor([1.0, 0.0]))
    model.save_pretrained(directory / "model")
    done = run_benchmark("learned_motion.py", "--run-dir", str(directory), "--sequences", "3", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _table(done.stdout)
    # The model's mean velocity is (1, 0) in every sequence, so the fit and the cosine follow from Lucas-Kanade's
    # mean velocities m_i alone: slope = sum x_i / sum |m_i|^2, cosine = sum x_i / (sqrt(N) sqrt(sum |m_i|^2)).
    recipe = RunDir(directory).recipe()
    dataset = build_dataset(recipe, "test")
    flow = OpticalFlow()
    contexts = [dataset[i]["context"].unsqueeze(0) for i in range(3)]
    means = torch.stack([wet_mean(flow.motion(c)[0, 0], c[0, -1, 0] > 0) for c in contexts])
    norm = means.square().sum()
    expected = (float(means[:, 0].sum() / norm), float(means[:, 0].sum() / (3**0.5 * norm.sqrt())))
    assert len(rows) == HORIZON
    for slope, cosine in rows:
        assert slope == pytest.approx(expected[0], abs=0.006) and cosine == pytest.approx(expected[1], abs=0.006)


def test_a_model_without_an_advection_head_is_refused(tmp_path: Path) -> None:
    directory, _ = _run_dir(tmp_path, "shi2015_radar_convlstm")
    done = run_benchmark("learned_motion.py", "--run-dir", str(directory), timeout=300)
    assert done.returncode != 0 and "has no advection head" in done.stderr


def test_a_run_without_a_model_is_refused(tmp_path: Path) -> None:
    done = run_benchmark("learned_motion.py", "--run-dir", str(tmp_path), timeout=300)
    assert done.returncode == 2 and "holds no trained model" in done.stderr


def test_wet_mean_averages_only_the_raining_pixels() -> None:
    field = torch.zeros(2, 3, 3)
    field[0, 0, 0], field[1, 0, 0], field[0, 2, 2] = 2.0, -1.0, 100.0
    wet = torch.zeros(3, 3, dtype=torch.bool)
    wet[0, 0] = wet[1, 1] = True
    torch.testing.assert_close(wet_mean(field, wet), torch.tensor([1.0, -0.5]))
