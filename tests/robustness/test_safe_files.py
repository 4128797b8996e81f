"""Safe files: weights and recipes load without running code from the file, broken files get errors that name
them, and no recipe can make a run write outside its directory."""

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from convlstm.cli.main import main
from convlstm.experiment import RecipeError, RunDir, load_recipe, recipe_from_dict
from convlstm.experiment.recipe import recipe_source
from convlstm.models import create_model, from_pretrained
from convlstm.models.base import CONFIG_FILE, WEIGHTS_FILE
from convlstm.tasks import ForecastingTask, load_task
from convlstm.tasks.base import read_checkpoint


class WritesMarker:
    """Unpickling this object calls open(marker, "w"): the file appears iff pickled code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def _tiny_model() -> Any:
    return create_model("next_frame_tiny", encoder_channels=(4, 4), hidden_channels=(4,), default_horizon=2)


def _checkpoint(path: Path, **extra: Any) -> Path:
    """A checkpoint as ForecastingTask writes it (hyperparameters and state_dict), plus ``extra`` entries."""
    task = ForecastingTask(_tiny_model())
    torch.save({"hyper_parameters": dict(task.hparams), "state_dict": task.state_dict(), **extra}, path)
    return path


@pytest.fixture
def malicious(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "code_ran"
    path = _checkpoint(tmp_path / "evil.ckpt", payload=WritesMarker(marker))
    assert not marker.exists()
    return path, marker


def test_the_payload_is_live_when_unpickled(malicious: tuple[Path, Path]) -> None:
    path, marker = malicious
    torch.load(path, weights_only=False)  # what the library never does
    assert marker.exists()


def test_checkpoints_with_pickled_code_are_refused(malicious: tuple[Path, Path]) -> None:
    path, marker = malicious
    for load in (load_task, ForecastingTask.from_checkpoint, read_checkpoint):
        with pytest.raises(ValueError, match="refused") as error:
            load(path)
        assert str(path) in str(error.value) and "could run code" in str(error.value)
    assert not marker.exists()
    good = _checkpoint(path.with_name("good.ckpt"))
    assert isinstance(load_task(good), ForecastingTask)


def _run_dir(root: Path, checkpoint: Path) -> Path:
    """A run directory as `convlstm fit` leaves it, with ``checkpoint`` as its last.ckpt."""
    recipe = load_recipe(
        "demo",
        [
            "model.name=next_frame_tiny",
            "model.args={encoder_channels: [4, 4], hidden_channels: [4], default_horizon: 2}",
            "data.context_frames=2",
            "data.target_frames=2",
            "data.train_sequences=4",
            "data.val_sequences=4",
            "data.test_sequences=4",
            "data.batch_size=4",
            "trainer.max_minutes=null",
            "trainer.max_steps=1",
            "trainer.enable_progress_bar=false",
        ],
    )
    run = RunDir(root / "run")
    run.create(recipe, resume=False)
    run.checkpoint_dir.mkdir()
    shutil.copy(checkpoint, run.checkpoint_dir / "last.ckpt")
    return run.path


def test_the_command_refuses_a_malicious_checkpoint(
    malicious: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, marker = malicious
    run = _run_dir(tmp_path, path)
    for command in (["test", "--run-dir", str(run)], ["export", "--run-dir", str(run), "--output", str(tmp_path)]):
        assert main(command) == 2
        assert "last.ckpt holds pickled objects" in capsys.readouterr().err
    resume = ["fit", "-c", str(run / "recipe.yaml"), "--run-dir", str(run), "--resume"]
    assert main(resume) == 2
    assert "last.ckpt holds pickled objects" in capsys.readouterr().err
    assert not marker.exists()


@pytest.mark.parametrize("cut", [0, 10, 0.5, -20])
def test_truncated_checkpoints_give_an_error_naming_the_file(
    tmp_path: Path, cut: float, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _checkpoint(tmp_path / "whole.ckpt").read_bytes()
    size = int(len(data) * cut) if isinstance(cut, float) else cut % len(data)
    path = tmp_path / "cut.ckpt"
    path.write_bytes(data[:size])
    with pytest.raises(ValueError, match="truncated, corrupt or not a torch file") as error:
        load_task(path)
    assert str(path) in str(error.value)
    run = _run_dir(tmp_path, path)
    assert main(["fit", "-c", str(run / "recipe.yaml"), "--run-dir", str(run), "--resume"]) == 2
    assert "last.ckpt could not be read as a Lightning checkpoint" in capsys.readouterr().err


def test_foreign_files_are_not_checkpoints(tmp_path: Path) -> None:
    plain = tmp_path / "tensor.ckpt"
    torch.save(torch.zeros(3), plain)
    with pytest.raises(ValueError, match="is not a Lightning checkpoint"):
        load_task(plain)
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"notes\.ckpt could not be read"):
        load_task(text)
    with pytest.raises(FileNotFoundError, match=r"missing\.ckpt"):
        load_task(tmp_path / "missing.ckpt")


# --------------------------------------------------------------------------------------------- safetensors
@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return _tiny_model().save_pretrained(tmp_path / "model")


def test_save_pretrained_writes_no_pickle(saved: Path) -> None:
    assert sorted(p.name for p in saved.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    header_size = int.from_bytes((saved / WEIGHTS_FILE).read_bytes()[:8], "little")
    header = json.loads((saved / WEIGHTS_FILE).read_bytes()[8 : 8 + header_size])
    assert header and all(entry["dtype"] == "F32" for key, entry in header.items() if key != "__metadata__")
    from safetensors.torch import load_file

    stored, rebuilt = load_file(saved / WEIGHTS_FILE), from_pretrained(saved).state_dict()
    assert stored.keys() == rebuilt.keys()
    assert all(torch.equal(stored[name], rebuilt[name]) for name in stored)


@pytest.mark.parametrize(
    "tamper",
    ["truncate_half", "truncate_header", "empty", "garbage_header", "huge_header_size", "offsets_past_end"],
)
def test_tampered_safetensors_give_an_error_naming_the_file(saved: Path, tamper: str) -> None:
    path = saved / WEIGHTS_FILE
    data = path.read_bytes()
    header_size = int.from_bytes(data[:8], "little")
    if tamper == "truncate_half":
        data = data[: len(data) // 2]
    elif tamper == "truncate_header":
        data = data[: 8 + header_size // 2]
    elif tamper == "empty":
        data = b""
    elif tamper == "garbage_header":
        data = data[:8] + b"{" * header_size + data[8 + header_size :]
    elif tamper == "huge_header_size":
        data = (2**60).to_bytes(8, "little") + data[8:]
    else:
        header = json.loads(data[8 : 8 + header_size])
        name = next(k for k in header if k != "__metadata__")
        header[name]["data_offsets"] = [0, 10**12]
        text = json.dumps(header).encode()
        data = len(text).to_bytes(8, "little") + text + data[8 + header_size :]
    path.write_bytes(data)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        from_pretrained(saved)


def test_weights_of_another_shape_are_refused(saved: Path) -> None:
    other = create_model("next_frame_tiny", encoder_channels=(4, 4), hidden_channels=(6,), default_horizon=2)
    other.save_pretrained(saved.parent / "other")
    shutil.copy(saved.parent / "other" / WEIGHTS_FILE, saved / WEIGHTS_FILE)
    with pytest.raises(ValueError, match=re.escape(str(saved / WEIGHTS_FILE))) as error:
        from_pretrained(saved)
    assert "could not be read as safetensors weights" in str(error.value) or "does not fit" in str(error.value)


@pytest.mark.parametrize(
    "config",
    [
        b"\xff\xfe not text",
        b"[1, 2]",
        b'{"family": ["next_frame"], "config": {}}',
        b'{"family": "next_frame", "config": 3}',
        b'{"family": "no_such_family", "config": {}}',
        b'{"family": "next_frame", "config": {"in_channels": 1}}',
    ],
)
def test_tampered_configs_give_an_error_naming_the_file(saved: Path, config: bytes) -> None:
    (saved / CONFIG_FILE).write_bytes(config)
    with pytest.raises(ValueError, match=re.escape(str(saved / CONFIG_FILE))):
        from_pretrained(saved)


@pytest.mark.parametrize(("key", "value"), [("hidden_channels", "abc"), ("kernel_size", -3), ("in_channels", [1])])
def test_config_values_the_model_refuses_name_the_file(saved: Path, key: str, value: Any) -> None:
    config = json.loads((saved / CONFIG_FILE).read_text())
    config["config"][key] = value
    (saved / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ValueError, match="does not build a next_frame") as error:
        from_pretrained(saved)
    assert str(saved / CONFIG_FILE) in str(error.value)


# --------------------------------------------------------------------------------------------- YAML
def _python_tag(marker: Path) -> str:
    return f"!!python/object/apply:builtins.open [{json.dumps(str(marker))}, w]"


def test_the_yaml_payload_is_live_when_loaded_unsafely(tmp_path: Path) -> None:
    marker = tmp_path / "code_ran"
    yaml.unsafe_load(f"name: {_python_tag(marker)}")
    assert marker.exists()


def test_recipes_with_python_tags_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "code_ran"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(recipe_source("demo")[0] + f"\ndescription: {_python_tag(marker)}\n")
    with pytest.raises(RecipeError, match="is not valid YAML"):
        load_recipe(recipe)
    assert main(["fit", "-c", str(recipe), "--run-dir", str(tmp_path / "run")]) == 2
    assert "could not determine a constructor" in capsys.readouterr().err
    override = ["-o", f"description={_python_tag(marker)}"]
    assert main(["fit", "-c", "demo", "--run-dir", str(tmp_path / "run"), *override]) == 2
    assert "the value is not valid YAML" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_a_tampered_run_recipe_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "code_ran"
    run = RunDir(tmp_path / "run")
    run.create(load_recipe("demo"), resume=False)
    run.recipe_path.write_text(run.recipe_path.read_text() + f"\ndescription: {_python_tag(marker)}\n")
    with pytest.raises(RecipeError, match=r"recipe.yaml is not a valid YAML recipe"):
        run.recipe()
    assert main(["evaluate", "--run-dir", str(run.path)]) == 2
    assert "recipe.yaml is not a valid YAML recipe" in capsys.readouterr().err
    assert not marker.exists()


# --------------------------------------------------------------------------------------------- output paths
@pytest.mark.parametrize("name", ["../outside.json", "a/../../outside.json", "/tmp/outside.json", "..", "/"])
def test_output_names_cannot_leave_the_run_directory(tmp_path: Path, name: str) -> None:
    run = RunDir(tmp_path / "run")
    with pytest.raises(ValueError, match="outside the run directory"):
        run.resolve(name)


def test_output_names_inside_the_run_directory_are_kept(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    assert run.resolve("metrics.json") == (tmp_path / "run" / "metrics.json").resolve()
    assert run.resolve("plots/../scores.png") == (tmp_path / "run" / "scores.png").resolve()


def test_a_symlink_out_of_the_run_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "run" / "link")
    with pytest.raises(ValueError, match="outside the run directory"):
        RunDir(tmp_path / "run").resolve("link/metrics.json")


@pytest.mark.parametrize("name", ["../escape", "a/b", "/tmp/escape", "..", ".", "", "  ", "a\\..\\b"])
def test_recipe_names_that_are_paths_are_refused(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = {"name": name, "data": {"source": "moving_mnist"}, "model": {"name": "persistence"}}
    with pytest.raises(RecipeError, match="must be a plain directory name"):
        recipe_from_dict(raw)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["fit", "-c", str(recipe)]) == 2  # no --run-dir: the run would go to runs/<name>
    assert "must be a plain directory name" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
