"""Recipe -> datasets, model, task and Trainer."""

import dataclasses
import datetime
import inspect
import logging
from pathlib import Path
from typing import Any

from lightning.fabric.utilities.exceptions import MisconfigurationException
from torch import nn
from torch.utils.data import Dataset

from convlstm.data.sources import make_dataset, source_class
from convlstm.experiment.recipe import Recipe, RecipeError, read_arguments
from convlstm.experiment.run_dir import LOGS, RunDir
from convlstm.experiment.task_kinds import task_kind
from convlstm.models import create_model, family_class, from_pretrained, model_builder, model_family
from convlstm.tasks import OptimizationConfig, SequenceDataModule, TaskBase, TrainerConfig, make_trainer
from convlstm.tasks.optim import OPTIMIZATION_FIELDS, split_optimization

logger = logging.getLogger(__name__)


def build_dataset(recipe: Recipe, split: str) -> Dataset[Any]:
    """The ``split`` partition of the recipe's data source (generators get the recipe's sequence counts)."""
    data = recipe.data
    args = read_arguments(source_class(data.source), data.args, "data.args")
    count = {"train": data.train_sequences, "val": data.val_sequences, "test": data.test_sequences}.get(split)
    if count is not None and "num_sequences" in inspect.signature(source_class(data.source)).parameters:
        args["num_sequences"] = count
    return make_dataset(
        data.source,
        split,
        context_frames=data.context_frames,
        target_frames=data.target_frames,
        seed=recipe.seed,
        args=args,
    )


def build_datamodule(recipe: Recipe, splits: tuple[str, ...] = ("train", "val", "test")) -> SequenceDataModule:
    """A DataModule over the recipe's ``splits``, with its batch sizes, workers and seed."""
    datasets = {split: build_dataset(recipe, split) for split in splits}
    return SequenceDataModule(
        datasets.get("train"),
        datasets.get("val"),
        datasets.get("test"),
        batch_size=recipe.data.batch_size,
        eval_batch_size=recipe.data.eval_batch_size,
        num_workers=recipe.data.num_workers,
        seed=recipe.seed,
    )


def build_model(recipe: Recipe) -> nn.Module:
    """The recipe's registered model with its argument overrides, starting from ``model.init_from`` if given."""
    name = recipe.model.name
    # A builder passes its keyword overrides on to its family's class, whose signature types them.
    args = read_arguments(
        model_builder(name), recipe.model.args, "model.args", kwargs_to=family_class(model_family(name))
    )
    try:
        model = create_model(name, **args)
    except TypeError as err:  # an argument the model does not take, or of a type it cannot use
        raise RecipeError(f"model.args {recipe.model.args} do not fit {recipe.model.name}: {err}") from None
    if recipe.model.init_from is not None:
        _load_initial_weights(model, Path(recipe.model.init_from))
    return model


def _load_initial_weights(model: nn.Module, directory: Path) -> None:
    """Copies a saved model's weights into ``model`` (fine-tuning); both must be the same network."""
    saved = from_pretrained(directory)
    ours = model.state_dict()
    theirs = saved.state_dict()
    mismatched = sorted(
        k for k in ours.keys() | theirs.keys() if k not in ours or k not in theirs or ours[k].shape != theirs[k].shape
    )
    if type(saved) is not type(model) or mismatched:
        raise RecipeError(
            f"model.init_from {directory} holds a {type(saved).__name__} that does not fit the recipe's "
            f"{type(model).__name__} (differing weights: {mismatched[:5]}{' ...' if len(mismatched) > 5 else ''})"
        )
    model.load_state_dict(theirs)
    logger.info("initial weights from %s", directory)


def build_task(recipe: Recipe, model: nn.Module) -> TaskBase:
    """The training system of the recipe's ``task.kind`` (its [`TaskKindSpec`][convlstm.experiment.TaskKindSpec])
    around ``model``, with ``task.args``.

    The optimisation settings among ``task.args`` (``lr``, ``lr_schedule``, ...: the fields of
    [`OptimizationConfig`][convlstm.tasks.OptimizationConfig]) replace those of the task's default config and go to
    it whole as ``optimization``; the other arguments go to the task as they are.
    """
    spec = task_kind(recipe.task.kind)
    task_class = spec.training_system
    parameters = inspect.signature(task_class).parameters
    optimization_default = parameters["optimization"].default if "optimization" in parameters else None
    accepted = set(parameters) - {"model", "optimization"}
    if isinstance(optimization_default, OptimizationConfig):
        accepted |= set(OPTIMIZATION_FIELDS)
    unknown = sorted(set(recipe.task.args) - accepted)
    if unknown:
        raise RecipeError(
            f"task.args {unknown} are not arguments of {task_class.__name__} (task.kind {recipe.task.kind}); "
            f"it takes {sorted(accepted)}"
        )
    settings, rest = split_optimization(recipe.task.args)
    args = read_arguments(task_class, rest, "task.args")
    if settings and isinstance(optimization_default, OptimizationConfig):
        read = read_arguments(OptimizationConfig, settings, "task.args")
        args["optimization"] = dataclasses.replace(optimization_default, **read)
    if spec.clips_own_gradients:  # it steps its optimizer itself, so it clips too (the Trainer must not)
        args.setdefault("gradient_clip_val", recipe.trainer.gradient_clip_val)
    try:
        return task_class(model, **args)
    except TypeError as err:
        raise RecipeError(f"task.args do not fit {task_class.__name__}: {err}") from None


def build_trainer(recipe: Recipe, run: RunDir, **overrides: Any) -> Any:
    """A Trainer (seeded first) writing logs and checkpoints into ``run``; ``overrides`` replace recipe settings (as
    the keywords of [`make_trainer`][convlstm.tasks.make_trainer]: fields of
    [`TrainerConfig`][convlstm.tasks.TrainerConfig], or other Lightning Trainer arguments)."""
    t = recipe.trainer
    lightning: dict[str, Any] = {"log_every_n_steps": t.log_every_n_steps}
    if t.limit_train_batches is not None:
        lightning["limit_train_batches"] = t.limit_train_batches
    if t.limit_val_batches is not None:
        lightning["limit_val_batches"] = t.limit_val_batches
    if t.val_check_interval is not None:
        # Counted in steps across epoch boundaries: Lightning's per-epoch validation schedule is switched off.
        lightning.update(val_check_interval=t.val_check_interval, check_val_every_n_epoch=None)
    max_time = None if t.max_minutes is None else datetime.timedelta(minutes=t.max_minutes)
    try:
        config = TrainerConfig(
            root_dir=run.path,
            name=LOGS,
            version=run.next_log_version(),
            checkpoint_dir=run.checkpoint_dir,
            checkpoint_every_minutes=t.checkpoint_every_minutes,
            save_top_k=t.save_top_k,
            seed=recipe.seed,
            accelerator=t.accelerator,
            devices=t.devices,
            num_nodes=t.num_nodes,
            precision=t.precision,
            compile_gates=t.compile_gates,
            max_epochs=t.max_epochs if t.max_epochs is not None else (None if t.max_steps > 0 or max_time else 1),
            max_steps=t.max_steps,
            max_time=max_time,
            gradient_clip_val=None if task_kind(recipe.task.kind).clips_own_gradients else t.gradient_clip_val,
            early_stopping_patience=t.early_stopping_patience,
            enable_progress_bar=t.enable_progress_bar,
            lightning=lightning,
        )
        return make_trainer(config, **overrides)
    except MisconfigurationException as err:  # Lightning's word for a bad Trainer argument
        raise RecipeError(f"trainer section: {err}") from None
