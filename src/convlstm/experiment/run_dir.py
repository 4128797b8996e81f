"""A run directory: the resolved recipe, Lightning logs and checkpoints, the best model, and evaluation outputs.

runs/<name>/recipe.yaml          the recipe as run (overrides applied)
runs/<name>/logs/version_0/      TensorBoard + CSV logs, checkpoints/ (best by val/loss, last.ckpt)
runs/<name>/model/               the best model: config.json + model.safetensors
runs/<name>/training.json        steps, epochs, minutes, device, precision, and why the training stopped
runs/<name>/metrics.json, report.html, *.png, *.gif     written by `convlstm evaluate`
"""

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from convlstm.experiment.recipe import Recipe, RecipeError, recipe_from_dict
from convlstm.models import CONFIG_FILE, from_pretrained
from convlstm.tasks import load_task
from convlstm.utils.atomic import atomic_write_text, remove_stale_temporaries

logger = logging.getLogger(__name__)

RECIPE_FILE = "recipe.yaml"
LOGS = "logs"
MODEL_DIR = "model"
TRAINING_FILE = "training.json"
DEMO_MARKER = ".convlstm-demo"
"""Marks a directory that `convlstm demo` made and may replace; nothing else in a run directory is ever replaced."""


def launched_rank() -> int:
    """This process's global rank as its launcher set it (torchrun: RANK, SLURM: SLURM_PROCID, Lightning's DDP
    launcher: NODE_RANK and LOCAL_RANK); 0 when it was started alone."""
    if "RANK" in os.environ:
        return int(os.environ["RANK"])
    if "SLURM_PROCID" in os.environ:
        return int(os.environ["SLURM_PROCID"])
    return int(os.environ.get("NODE_RANK", "0")) + int(os.environ.get("LOCAL_RANK", "0"))


class RunDir:
    """A run directory (layout in the module docstring); nothing is read or written until a method asks."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @property
    def recipe_path(self) -> Path:
        """The recipe as run."""
        return self.path / RECIPE_FILE

    @property
    def model_dir(self) -> Path:
        """The best model, as save_pretrained writes it."""
        return self.path / MODEL_DIR

    @property
    def training_path(self) -> Path:
        """What the training did: steps, epochs, minutes, device, precision and why it stopped (JSON)."""
        return self.path / TRAINING_FILE

    def training_record(self) -> dict[str, Any] | None:
        """The contents of [`training_path`][convlstm.experiment.RunDir.training_path], or None for a run that has not
        written it."""
        if not self.training_path.is_file():
            return None
        record: dict[str, Any] = json.loads(self.training_path.read_text(encoding="utf-8"))
        return record

    @property
    def checkpoint_dir(self) -> Path:
        """Lightning checkpoints (best by val/loss, last.ckpt)."""
        return self.path / "checkpoints"

    def next_log_version(self) -> int:
        """Lightning's CSV logger rewrites an existing version's metrics.csv: a resumed session gets a new one."""
        versions = [int(p.name.split("_")[1]) for p in (self.path / LOGS).glob("version_*") if p.name[8:].isdigit()]
        return max(versions, default=-1) + 1

    def create(self, recipe: Recipe, *, resume: bool, overwrite: bool = False) -> None:
        """Claims the directory for a new run, or checks that there is a run to resume.

        A directory that already holds a run is replaced only when asked (``overwrite``, --overwrite): otherwise
        resuming needs --resume, a new run another --run-dir. In a multi-process run (Lightning's DDP launcher,
        torchrun, SLURM) only rank 0 claims it: the other processes run the same command and share rank 0's
        directory.
        """
        if launched_rank() > 0:
            return
        if resume and overwrite:
            raise ValueError("--resume continues the run in the directory and --overwrite replaces it: pass one")
        if overwrite and self.recipe_path.exists():
            shutil.rmtree(self.path)
            logger.info("removed the earlier run in %s (--overwrite)", self.path)
        if self.recipe_path.exists() and not resume:
            raise FileExistsError(
                f"{self.path} already holds a run ({RECIPE_FILE}); pass --resume to continue it, --overwrite to "
                "replace it, or choose another --run-dir"
            )
        if resume and not self.recipe_path.exists():
            raise FileNotFoundError(f"--resume: {self.recipe_path} not found, so there is no run to continue")
        if resume and self.last_checkpoint() is None:
            raise FileNotFoundError(
                f"--resume: {self.path} holds a run that stopped before writing its first checkpoint "
                f"({self.checkpoint_dir / 'last.ckpt'}), so there is nothing to continue: start it anew with "
                "--overwrite instead of --resume, or choose another --run-dir"
            )
        if not resume and self.path.exists() and any(p.name != DEMO_MARKER for p in self.path.iterdir()):
            raise FileExistsError(f"{self.path} is not empty; choose an empty or new --run-dir")
        self.path.mkdir(parents=True, exist_ok=True)
        if not resume:
            atomic_write_text(self.recipe_path, yaml.safe_dump(recipe.to_dict(), sort_keys=False))
        else:
            # A run killed while writing a checkpoint leaves its temporary file beside the intact old one.
            for path in remove_stale_temporaries(self.path):
                logger.info("removed %s, left by an interrupted write", path)

    def outermost_missing(self) -> Path | None:
        """The outermost folder of [`path`][convlstm.experiment.RunDir.path] that does not exist yet (``runs`` for a
        first ``runs/demo``), or
        None when the run directory exists: what a new run creates, and [`discard`][convlstm.experiment.RunDir.discard]
            removes."""
        missing = None
        for folder in (self.path, *self.path.parents):
            if folder.exists():
                break
            missing = folder
        return missing

    def discard(self, *, created: Path | None) -> str:
        """Undoes [`create`][convlstm.experiment.RunDir.create] for a run that wrote no checkpoint: removes ``created``
        (from [`outermost_missing`][convlstm.experiment.RunDir.outermost_missing] before the run), else what the run put
        into its directory (recipe, logs, checkpoints), so that the next ``fit`` can use it. Returns what it did."""
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
            return f"removed {created}, which this fit created; nothing was trained"
        self.recipe_path.unlink(missing_ok=True)
        for folder in (self.path / LOGS, self.checkpoint_dir):
            shutil.rmtree(folder, ignore_errors=True)
        return f"removed what this fit wrote into {self.path}; nothing was trained"

    def recipe(self) -> Recipe:
        """The recipe this run was made with."""
        if not self.recipe_path.is_file():
            raise FileNotFoundError(f"{self.recipe_path} not found: is {self.path} a run directory made by `fit`?")
        try:
            raw = yaml.safe_load(self.recipe_path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise RecipeError(f"{self.recipe_path} is not a valid YAML recipe: {err}") from None
        return recipe_from_dict(raw, origin=str(self.recipe_path))

    def last_checkpoint(self) -> Path | None:
        """last.ckpt, or None before the first one is written."""
        last = self.checkpoint_dir / "last.ckpt"
        return last if last.is_file() else None

    def best_checkpoint(self) -> Path:
        """The checkpoint with the lowest validation loss (named by the Trainer), else last.ckpt."""
        scored = []
        for path in self.checkpoint_dir.glob("*.ckpt"):
            marker = "val_loss="
            if marker in path.stem:
                try:
                    scored.append((float(path.stem.split(marker)[1]), path))
                except ValueError:
                    continue
        if scored:
            return min(scored)[1]
        last = self.last_checkpoint()
        if last is None:
            raise FileNotFoundError(f"no checkpoint in {self.checkpoint_dir}: run `convlstm fit` first")
        return last

    def resolve(self, name: str) -> Path:
        """A path for an output file inside the run directory; names that would leave it are refused."""
        target = (self.path / name).resolve()
        if not target.is_relative_to(self.path.resolve()):
            raise ValueError(f"output {name!r} would be written outside the run directory {self.path}")
        return target

    def trained_model(self) -> nn.Module:
        """The trained model in eval mode: the saved best model, else the model of the best checkpoint."""
        if (self.model_dir / CONFIG_FILE).exists():
            return from_pretrained(self.model_dir).eval()
        return load_task(self.best_checkpoint()).model.eval()
