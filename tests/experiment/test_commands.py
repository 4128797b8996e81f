"""The `convlstm` command end to end on a tiny run: fit, resume, test, evaluate, predict, export, list-models."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from convlstm.cli.main import main

TINY = [
    "-o", "trainer.max_steps=4",
    "-o", "trainer.max_minutes=null",
    "-o", "trainer.enable_progress_bar=false",
    "-o", "data.train_sequences=16",
    "-o", "data.val_sequences=8",
    "-o", "data.test_sequences=8",
    "-o", "data.batch_size=4",
    "-o", "model.args.hidden_channels=[8, 8]",
    "-o", "task.args.lr=2e-3",  # the demo's own rate, spelt as YAML 1.1 reads a string: the task's type reads a float
]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["fit", "-c", "demo", "--run-dir", str(run_dir), *TINY]) == 0
    return run_dir


def test_fit_writes_recipe_checkpoints_and_model(run: Path) -> None:
    assert (run / "recipe.yaml").is_file()
    assert (run / "model" / "config.json").is_file() and (run / "model" / "model.safetensors").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "logs" / "version_0" / "metrics.csv").is_file()
    assert not list(run.rglob("*.tmp"))


def test_save_top_k_minus_one_keeps_a_checkpoint_per_validation(tmp_path: Path) -> None:
    every = ["-o", "trainer.val_check_interval=2", "-o", "trainer.save_top_k=-1"]
    assert main(["fit", "-c", "demo", "--run-dir", str(tmp_path / "all"), *TINY, *every]) == 0
    kept = sorted(p.name for p in (tmp_path / "all" / "checkpoints").glob("*val_loss=*.ckpt"))
    assert [name.split("-")[1] for name in kept] == ["step=2", "step=4"]


def test_fit_refuses_to_overwrite_a_run(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "-c", "demo", "--run-dir", str(run), *TINY]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err


def test_a_run_with_nothing_to_resume_names_the_ways_out_and_overwrite_replaces_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run killed before its first checkpoint: --resume says it has nothing to continue and how to get out;
    --overwrite starts it anew (and cannot be combined with --resume)."""
    run = tmp_path / "stopped"
    run.mkdir()
    (run / "recipe.yaml").write_text("name: stopped\n")
    (run / "checkpoints").mkdir()
    fit = ["fit", "-c", "demo", "--run-dir", str(run), *TINY, "-o", "trainer.max_steps=1"]
    assert main([*fit, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "nothing to continue" in err and "--overwrite" in err and "another --run-dir" in err
    assert main([*fit, "--resume", "--overwrite"]) == 2
    assert "pass one" in capsys.readouterr().err
    assert main([*fit, "--overwrite"]) == 0
    assert (run / "checkpoints" / "last.ckpt").is_file() and "name: demo" in (run / "recipe.yaml").read_text()


def test_a_failed_fit_leaves_no_folder_it_created(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    bad = ["-o", "data.args.no_such_argument=1"]
    assert main(["fit", "-c", "demo", "--run-dir", str(runs / "demo"), *TINY, *bad]) == 2
    assert "no_such_argument" in capsys.readouterr().err
    assert not runs.exists()


def test_resume_continues_from_last_checkpoint(run: Path) -> None:
    more = [*TINY, "-o", "trainer.max_steps=6"]
    assert main(["fit", "-c", "demo", "--run-dir", str(run), "--resume", *more]) == 0
    import torch

    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == 6
    assert (run / "logs" / "version_0" / "metrics.csv").is_file()  # the first session's log is kept
    assert (run / "logs" / "version_1" / "metrics.csv").is_file()


def test_evaluate_writes_metrics_plots_animations_and_report(run: Path) -> None:
    assert main(["evaluate", "--run-dir", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())["methods"]
    assert set(metrics) == {"encoder_forecaster_tiny", "persistence"}
    for scores in metrics.values():
        assert len(scores["mse_per_frame_by_lead_time"]) == 10 and scores["mse_per_frame"] > 0
    assert (run / "scores_by_lead_time.png").is_file()
    assert (run / "test_sequence_0.gif").is_file()
    html = (run / "report.html").read_text()
    assert "persistence" in html and html.count("data:image/") >= 3
    # What the scores depend on: the steps and minutes trained, on what and in which precision.
    import torch

    training = json.loads((run / "metrics.json").read_text())["training"]
    assert training["steps"] == torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert training["train_minutes"] > 0 and training["stopped_by"] == "max_steps"
    assert training["precision"] in ("32-true", "bf16-mixed") and training["device"]
    assert f"<th>training steps</th><td>{training['steps']}</td>" in html
    assert f"<th>training precision</th><td>{training['precision']}</td>" in html


def test_test_command_scores_the_test_split(run: Path) -> None:
    assert main(["test", "--run-dir", str(run)]) == 0
    scores = json.loads((run / "test_metrics.json").read_text())
    assert scores["test/loss"] > 0 and "test/mse_per_frame" in scores


def test_predict_and_export(run: Path, tmp_path: Path) -> None:
    frames = np.random.default_rng(0).random((10, 1, 64, 64), dtype=np.float32)
    np.save(tmp_path / "frames.npy", frames)
    out = tmp_path / "pred"
    assert main(["predict", "--run-dir", str(run), "--input", str(tmp_path / "frames.npy"), "--output", str(out)]) == 0
    assert np.load(out / "predictions.npy").shape == (1, 10, 1, 64, 64)
    assert (out / "predictions.gif").is_file()
    exported = ["export", "--run-dir", str(run), "--output", str(tmp_path / "exported"), "--format", "safetensors"]
    assert main(exported) == 0
    from convlstm import from_pretrained

    assert type(from_pretrained(tmp_path / "exported")).__name__ == "EncoderForecaster"


def test_predict_rejects_bad_input(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "bad.npy", np.zeros((64, 64), dtype=np.float32))
    assert (
        main(["predict", "--run-dir", str(run), "--input", str(tmp_path / "bad.npy"), "--output", str(tmp_path)]) == 2
    )
    assert "expected (T, C, H, W) or (N, T, C, H, W), got shape (64, 64)" in capsys.readouterr().err


def test_list_models_prints_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list-models", "shi2015_convlstm_5x5_256"]) == 0
    assert "13,524,496" in capsys.readouterr().out


def test_help_lists_the_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("fit", "test", "predict", "evaluate", "export", "list-models", "demo"):
        assert command in out


@pytest.mark.e2e
def test_demo_says_how_many_steps_it_trained_and_how_it_compares(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--run-dir", str(tmp_path / "demo"), "--minutes", "0.05"]) == 0
    out = capsys.readouterr().out
    steps = re.search(r"trained (\d+) steps in 0.05 minutes", out)
    assert steps is not None and int(steps.group(1)) >= 1, out
    scores = re.search(r"MSE per frame: \S+ ([\d.]+), persistence ([\d.]+) \(([\d.]+)x\)", out)
    assert scores is not None, out
    model, persistence, ratio = map(float, scores.groups())
    assert ratio == pytest.approx(persistence / model, rel=0.01, abs=0.01)
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())["methods"]
    assert f"{metrics['persistence']['mse_per_frame']:.1f}" == f"{persistence:.1f}"
