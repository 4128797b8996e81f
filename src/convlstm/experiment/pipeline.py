"""Training and scoring a recipe: fit, test and evaluate, each on a run directory."""

import json
import logging
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning import seed_everything
from lightning.pytorch.callbacks import EarlyStopping, Timer

from convlstm.experiment import scoring
from convlstm.experiment.building import build_datamodule, build_dataset, build_model, build_task, build_trainer
from convlstm.experiment.recipe import Recipe, load_recipe
from convlstm.experiment.run_dir import DEMO_MARKER, RunDir
from convlstm.experiment.task_kinds import task_kind
from convlstm.models import PretrainedModel
from convlstm.tasks import load_task, read_checkpoint
from convlstm.tasks.callbacks import NonFiniteLossGuard, TrainingClock
from convlstm.tasks.step_checkpoint import STOP_SIGNALS, TrainingInterrupted
from convlstm.utils.atomic import atomic_write_text
from convlstm.utils.machine import device_name

logger = logging.getLogger(__name__)


def fit(recipe: Recipe, run_dir: Path, *, resume: bool, overwrite: bool = False) -> Path:
    """Trains the recipe's model; saves the best checkpoint's model to <run>/model. Returns the run directory.

    Data, model and task are built before the Trainer, so that a bad recipe fails with its own message before
    Lightning prints anything. A new run that fails before its first training step leaves no run behind: the
    folders this call created are removed, or what it wrote into an existing one, and the error says so.
    ``overwrite`` replaces a run already in ``run_dir``. What the training did (steps, epochs, minutes, device,
    precision, why it stopped) goes to <run>/training.json, also when Ctrl-C or SIGTERM stops it: then the
    [`TrainingInterrupted`][convlstm.experiment.TrainingInterrupted] raised carries the command that resumes it.
    """
    run = RunDir(run_dir)
    created = run.outermost_missing()
    run.create(recipe, resume=resume, overwrite=overwrite)
    trainer: Any = None
    try:
        # Seeded before the model is built, so that its initialisation is seeded; the Trainer does not seed again.
        seed_everything(recipe.seed, workers=True, verbose=False)
        data = build_datamodule(recipe, ("train", "val"))
        task = build_task(recipe, build_model(recipe))
        checkpoint = run.last_checkpoint() if resume else None
        if checkpoint is not None:
            # Lightning's own errors for a truncated or foreign file name neither the file nor the problem.
            read_checkpoint(checkpoint)
        trainer = build_trainer(recipe, run, seed=None)
        trainer.fit(task, datamodule=data, ckpt_path=checkpoint, weights_only=True)
    except TrainingInterrupted as stop:
        _record_training(run, trainer, STOP_SIGNALS[stop.signal_number])
        stop.resume_command = resume_command(run)
        raise
    except BaseException as err:  # KeyboardInterrupt and SystemExit too: Ctrl-C before the first step
        if not resume and (trainer is None or trainer.global_step == 0):
            _say_removed(err, run.discard(created=created))
        raise
    stopped_by = training_stop_reason(trainer)
    _record_training(run, trainer, stopped_by)
    if stopped_by == "time limit":
        minutes = recipe.trainer.max_minutes
        logger.info(
            "stopped at the time limit (trainer.max_minutes=%g) after %d steps; to train longer: %s -o "
            "trainer.max_minutes=<total minutes, more than %g>",
            minutes,
            trainer.global_step,
            resume_command(run),
            minutes,
        )
    if trainer.global_rank == 0:
        _save_best_model(run)
    return run.path


def resume_command(run: RunDir) -> str:
    """The command that continues ``run`` from its last checkpoint, with the recipe as it ran."""
    return f"convlstm fit -c {shlex.quote(str(run.recipe_path))} --run-dir {shlex.quote(str(run.path))} --resume"


def training_stop_reason(trainer: Any) -> str:
    """Why a fit that returned stopped: "time limit", "max_steps", "early stopping", "non-finite loss" or
    "max_epochs"."""
    for callback in trainer.callbacks:
        if isinstance(callback, Timer) and (callback.time_remaining() or 0) <= 0:
            return "time limit"
        if isinstance(callback, NonFiniteLossGuard) and callback.stopped_reason is not None:
            return "non-finite loss"
        if isinstance(callback, EarlyStopping) and callback.stopped_epoch > 0:
            return "early stopping"
    if 0 < trainer.max_steps <= trainer.global_step:
        return "max_steps"
    return "max_epochs"


def _record_training(run: RunDir, trainer: Any, stopped_by: str) -> None:
    """Writes <run>/training.json (rank 0): the steps, epochs and minutes of training so far (counted on across
    resumed sessions), the device, the precision and why the last session stopped."""
    if trainer is None or trainer.global_rank != 0:
        return
    clock = next((c for c in trainer.callbacks if isinstance(c, TrainingClock)), None)
    record = {
        "steps": int(trainer.global_step),
        "epochs_completed": int(trainer.fit_loop.epoch_progress.current.completed),
        "train_minutes": None if clock is None else round(clock.elapsed_minutes(), 3),
        "device": device_name(trainer.strategy.root_device),
        "precision": str(trainer.precision),
        "stopped_by": stopped_by,
    }
    atomic_write_text(run.training_path, json.dumps(record, indent=2) + "\n")


def _say_removed(err: BaseException, what: str) -> None:
    """Adds what was cleaned up to the error's one-line message (or as a note where the message is not one string)."""
    if len(err.args) == 1 and isinstance(err.args[0], str):
        err.args = (f"{err.args[0]} ({what})",)
    else:
        err.add_note(what)


def _save_best_model(run: RunDir) -> None:
    best = run.best_checkpoint()
    task = load_task(best)
    if not isinstance(task.model, PretrainedModel):
        logger.warning("the model is not a registered family; %s keeps only the checkpoint", run.path)
        return
    task.model.save_pretrained(run.model_dir)
    atomic_write_text(run.path / "best_checkpoint.txt", f"{best.relative_to(run.path)}\n")
    logger.info("best checkpoint %s -> %s", best.name, run.model_dir)


def test(run_dir: Path) -> dict[str, float]:
    """Scores the best checkpoint on the test split with Lightning's test loop; writes ``test_metrics.json``.

    The task kind's record says what scores: the training system itself, or what it wraps it in (the anomaly kind
    scores frames by next-frame prediction error: test/auroc, test/psnr)."""
    run = RunDir(run_dir)
    recipe = run.recipe()
    trainer = build_trainer(recipe, run, loggers=False, checkpoints=False, early_stopping_patience=None)
    task = load_task(run.best_checkpoint())
    wrap = task_kind(recipe.task.kind).test_system
    if wrap is not None:
        task = wrap(task)
    (results,) = trainer.test(task, datamodule=build_datamodule(recipe, ("test",)))
    scores = {k: float(v) for k, v in results.items()}
    atomic_write_text(run.resolve("test_metrics.json"), json.dumps(scores, indent=2) + "\n")
    return scores


def evaluate(run_dir: Path, *, baselines: list[str] | None = None, num_sequences: int | None = None) -> Path:
    """Scores the trained model and ``baselines`` on the first ``num_sequences`` test sequences with the evaluator of
    the recipe's task kind; writes metrics.json, figures, GIFs and report.html into the run directory and returns the
    report's path.

    ``baselines`` default to the recipe's ``evaluate.baselines``, and where it names none (null) to the task kind's
    (its [`TaskKindSpec`][convlstm.experiment.TaskKindSpec]); ``num_sequences`` defaults to the recipe's."""
    run = RunDir(run_dir)
    recipe = run.recipe()
    spec = task_kind(recipe.task.kind)
    model = run.trained_model()
    dataset = scoring.first_sequences(build_dataset(recipe, "test"), num_sequences or recipe.evaluate.num_sequences)
    names = baselines if baselines is not None else recipe.evaluate.baselines
    if names is None:
        names = list(spec.default_baselines)
    results, samples = spec.evaluator(model, scoring.load_baselines(names, model), dataset, recipe)
    return scoring.write_outputs(run, recipe, results, samples)


@dataclass(frozen=True)
class DemoResult:
    """What [`demo`][convlstm.experiment.demo] did: the recipe it ran, the optimizer steps that fitted in its minutes,
    the report, and the model's and persistence's MSE per frame."""

    recipe: Recipe
    steps: int
    report: Path
    model_mse_per_frame: float
    persistence_mse_per_frame: float


def demo(run_dir: Path, *, minutes: float) -> DemoResult:
    """Fits the packaged ``demo`` recipe for ``minutes`` into ``run_dir``, then evaluates it against persistence.

    A directory left by an earlier demo (it holds a marker file) is replaced; any other existing one is refused.
    """
    if run_dir.exists():
        if not (run_dir / DEMO_MARKER).exists():
            raise FileExistsError(f"{run_dir} exists and was not written by `convlstm demo`; choose another --run-dir")
        shutil.rmtree(run_dir)  # a previous demo's output, replaced by this one
    recipe = load_recipe("demo", [f"trainer.max_minutes={minutes}"])
    run_dir.mkdir(parents=True)
    (run_dir / DEMO_MARKER).touch()
    fit(recipe, run_dir, resume=False)
    last = RunDir(run_dir).last_checkpoint()
    steps = int(read_checkpoint(last)["global_step"]) if last is not None else 0
    report = evaluate(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())["methods"]
    return DemoResult(
        recipe=recipe,
        steps=steps,
        report=report,
        model_mse_per_frame=metrics[recipe.model.name]["mse_per_frame"],
        persistence_mse_per_frame=metrics["persistence"]["mse_per_frame"],
    )
