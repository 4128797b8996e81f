"""benchmarks/openstl_cpu_budget.py at a tiny size: two of OpenSTL's models trained for a few seconds each through
`convlstm fit` and `convlstm evaluate`, then the table and its JSON."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from convlstm.models import create_model
from tests.benchmarks.scripts import assert_refused_keeping_out, run_benchmark

TINY = ["--minutes", "0.03", "--width", "0.05", "--test-sequences", "4", "--batch-size", "4"]


def test_two_models_train_for_the_same_budget_and_are_scored_on_one_test_set(tmp_path: Path) -> None:
    out, table = tmp_path / "runs", tmp_path / "table.json"
    done = run_benchmark(
        "openstl_cpu_budget.py", "--out", str(out), "--models", "convlstm_s", "simvp_gsta", "--json", str(table),
        *TINY, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    results = json.loads(table.read_text())
    rows = {row["model"]: row for row in results["rows"]}
    assert list(rows) == ["ConvLSTM-S", "SimVP+gSTA"] and results["minutes"] == 0.03 and results["width"] == 0.05
    # OpenSTL's widths x 0.05, to multiples of 4: hidden 128 -> 8; hid_S 64 -> 4, hid_T 512 -> 24.
    assert rows["ConvLSTM-S"]["model_args"]["hidden_channels"] == [8, 8, 8, 8]
    assert rows["SimVP+gSTA"]["model_args"] == {"spatial_channels": 4, "temporal_channels": 24}
    for row in rows.values():
        model = create_model(row["registered"], **row["model_args"])
        assert row["parameters"] == sum(p.numel() for p in model.parameters())
        assert row["steps"] >= 1 and row["train_minutes"] > 0 and row["batch_size"] == 4
        assert row["sequences_per_second"] == pytest.approx(4 * row["steps"] / (60 * row["train_minutes"]))
        assert row["mse_per_frame"] > 0 and -1 <= row["ssim"] <= 1
        # The budget protocol, written into the recipe each run trained from.
        assert Path(row["run_dir"]) == out / row["key"] / "run"
        recipe = yaml.safe_load((Path(row["run_dir"]) / "recipe.yaml").read_text())
        assert recipe["trainer"]["max_minutes"] == 0.03 and recipe["task"]["args"]["sampling"] == "none"
        assert recipe["task"]["args"]["lr_schedule"] == "constant" and recipe["data"]["test_sequences"] == 4
    # One test set: copying the last frame scores the same beside every model.
    assert rows["ConvLSTM-S"]["persistence_mse_per_frame"] == rows["SimVP+gSTA"]["persistence_mse_per_frame"]
    with torch.device("meta"):
        convlstm = create_model("openstl_convlstm_s", hidden_channels=(8, 8, 8, 8))
    assert rows["ConvLSTM-S"]["flops"] == convlstm.conv_flops(64, 64, steps=19)
    assert "widths x 0.05 of OpenSTL's" in done.stdout
    line = next(line for line in done.stdout.splitlines() if line.startswith("SimVP+gSTA "))  # the table's row
    assert f"{rows['SimVP+gSTA']['flops'] / 1e9:.2f}G" in line and str(rows["SimVP+gSTA"]["steps"]) in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--width", "0"], "--width must be in (0, 1]"),
        (["--models", "convlstm"], "invalid choice: 'convlstm'"),
        (["--minutes", "-1"], "--minutes must be > 0"),
        ([], "is not empty"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    assert_refused_keeping_out("openstl_cpu_budget.py", tmp_path / "runs", args, message)


def test_runs_need_an_output_folder() -> None:
    done = run_benchmark("openstl_cpu_budget.py", "--models", "tau", timeout=300)
    assert done.returncode == 2 and "--out is required" in done.stderr


def test_counts_print_openstls_sizes_without_training() -> None:
    done = run_benchmark("openstl_cpu_budget.py", "--counts", "--width", "1", "--models", "e3dlstm", "tau", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()[2:]}
    assert list(rows) == ["model", "E3D-LSTM", "TAU"]
    with torch.device("meta"):
        e3dlstm, tau = create_model("e3dlstm_mmnist"), create_model("tau_mmnist")
    expected = [(rows["E3D-LSTM"], e3dlstm, e3dlstm.flops(64, 64, 19)), (rows["TAU"], tau, tau.flops(64, 64))]
    for row, model, flops in expected:
        assert row[2:] == [f"{sum(p.numel() for p in model.parameters()):,}", f"{flops / 1e9:.2f}G"]
    # OpenSTL's table, to one decimal (of fvcore's exact counts: 298.872G and 15.953G): 298.9G and 16.0G.
    assert float(rows["E3D-LSTM"][3][:-1]) == pytest.approx(298.9, abs=0.06)
    assert float(rows["TAU"][3][:-1]) == pytest.approx(16.0, abs=0.06)
