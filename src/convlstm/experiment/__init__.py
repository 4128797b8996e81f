"""The experiment pipeline: recipes, building objects from them, run directories, fit / test / evaluate / predict /
nowcast / export and scoring. The command line, the benchmarks and users call the same functions:

    from convlstm.experiment import evaluate, fit, load_recipe

    recipe = load_recipe("demo", ["trainer.max_steps=20"])   # a packaged recipe, or a path to a YAML file
    fit(recipe, Path("runs/demo"), resume=False)
    report = evaluate(Path("runs/demo"))

Names are imported on first use, so that the command line can read recipes and answer ``--help`` without the
training extra (Lightning) installed. ``model_summaries`` and ``ModelSummary`` live in
[`convlstm.models`][convlstm.models], beside the registry they list.
"""

from typing import TYPE_CHECKING

from convlstm.utils.lazy import lazy_exports

_SOURCES = {
    "DEMO_MARKER": "run_dir",
    "DemoResult": "pipeline",
    "EXPORT_FORMATS": "exporting",
    "GridOptions": "predicting",
    "ModelSummary": ".models",
    "Recipe": "recipe",
    "RecipeError": "recipe",
    "RunDir": "run_dir",
    "TASK_KINDS": "task_kinds",
    "TaskKind": "recipe",
    "TaskKindSpec": "task_kinds",
    "TrainingInterrupted": "pipeline",
    "apply_override": "recipe",
    "build_datamodule": "building",
    "build_dataset": "building",
    "build_model": "building",
    "build_task": "building",
    "build_trainer": "building",
    "demo": "pipeline",
    "evaluate": "pipeline",
    "evaluate_anomaly": "scoring",
    "evaluate_forecasters": "scoring",
    "evaluate_prednet": "scoring",
    "evaluate_segmentation": "scoring",
    "export": "exporting",
    "first_sequences": "scoring",
    "fit": "pipeline",
    "is_gridded": "predicting",
    "list_recipes": "recipe",
    "load_baselines": "scoring",
    "load_recipe": "recipe",
    "model_summaries": ".models",
    "nowcast": "nowcasting",
    "predict": "predicting",
    "predict_gridded": "predicting",
    "recipe_from_dict": "recipe",
    "recipe_help": "recipe",
    "task_kind": "task_kinds",
    "test": "pipeline",
    "write_outputs": "scoring",
}

__all__ = sorted(_SOURCES)


__getattr__, __dir__ = lazy_exports(__name__, _SOURCES)


if TYPE_CHECKING:
    from convlstm.experiment.building import build_datamodule as build_datamodule
    from convlstm.experiment.building import build_dataset as build_dataset
    from convlstm.experiment.building import build_model as build_model
    from convlstm.experiment.building import build_task as build_task
    from convlstm.experiment.building import build_trainer as build_trainer
    from convlstm.experiment.exporting import EXPORT_FORMATS as EXPORT_FORMATS
    from convlstm.experiment.exporting import export as export
    from convlstm.experiment.nowcasting import nowcast as nowcast
    from convlstm.experiment.pipeline import DemoResult as DemoResult
    from convlstm.experiment.pipeline import TrainingInterrupted as TrainingInterrupted
    from convlstm.experiment.pipeline import demo as demo
    from convlstm.experiment.pipeline import evaluate as evaluate
    from convlstm.experiment.pipeline import fit as fit
    from convlstm.experiment.pipeline import test as test
    from convlstm.experiment.predicting import GridOptions as GridOptions
    from convlstm.experiment.predicting import is_gridded as is_gridded
    from convlstm.experiment.predicting import predict as predict
    from convlstm.experiment.predicting import predict_gridded as predict_gridded
    from convlstm.experiment.recipe import Recipe as Recipe
    from convlstm.experiment.recipe import RecipeError as RecipeError
    from convlstm.experiment.recipe import TaskKind as TaskKind
    from convlstm.experiment.recipe import apply_override as apply_override
    from convlstm.experiment.recipe import list_recipes as list_recipes
    from convlstm.experiment.recipe import load_recipe as load_recipe
    from convlstm.experiment.recipe import recipe_from_dict as recipe_from_dict
    from convlstm.experiment.recipe import recipe_help as recipe_help
    from convlstm.experiment.run_dir import DEMO_MARKER as DEMO_MARKER
    from convlstm.experiment.run_dir import RunDir as RunDir
    from convlstm.experiment.scoring import evaluate_anomaly as evaluate_anomaly
    from convlstm.experiment.scoring import evaluate_forecasters as evaluate_forecasters
    from convlstm.experiment.scoring import evaluate_prednet as evaluate_prednet
    from convlstm.experiment.scoring import evaluate_segmentation as evaluate_segmentation
    from convlstm.experiment.scoring import first_sequences as first_sequences
    from convlstm.experiment.scoring import load_baselines as load_baselines
    from convlstm.experiment.scoring import write_outputs as write_outputs
    from convlstm.experiment.task_kinds import TASK_KINDS as TASK_KINDS
    from convlstm.experiment.task_kinds import TaskKindSpec as TaskKindSpec
    from convlstm.experiment.task_kinds import task_kind as task_kind
    from convlstm.models import ModelSummary as ModelSummary
    from convlstm.models import model_summaries as model_summaries
