"""In a multi-process run every rank runs the same `convlstm fit` command; only rank 0 claims the run directory."""

from pathlib import Path

import pytest

from convlstm.experiment.recipe import load_recipe
from convlstm.experiment.run_dir import RECIPE_FILE, RunDir, launched_rank

LAUNCHER_VARIABLES = ("RANK", "SLURM_PROCID", "NODE_RANK", "LOCAL_RANK")


@pytest.mark.parametrize(
    ("env", "rank"),
    [
        ({}, 0),
        ({"RANK": "3", "LOCAL_RANK": "1"}, 3),  # torchrun
        ({"SLURM_PROCID": "5"}, 5),  # srun
        ({"LOCAL_RANK": "1"}, 1),  # Lightning's launcher on one node
        ({"NODE_RANK": "1", "LOCAL_RANK": "0"}, 1),
    ],
)
def test_launched_rank(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], rank: int) -> None:
    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert launched_rank() == rank


def test_only_rank_zero_claims_the_run_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    recipe = load_recipe("demo")
    run = RunDir(tmp_path / "run")
    run.create(recipe, resume=False)
    assert (run.path / RECIPE_FILE).is_file()
    monkeypatch.setenv("LOCAL_RANK", "1")  # the second process re-runs the command: it joins instead of refusing
    run.create(recipe, resume=False)
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(FileExistsError, match="already holds a run"):
        run.create(recipe, resume=False)
