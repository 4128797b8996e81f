"""The experiment pipeline: recipes, building objects from them, run directories, fit / test / evaluate / predict /
export and scoring. The command line, the benchmarks and users call the same functions:

    from convlstm.experiment import evaluate, fit, load_recipe

    recipe = load_recipe("demo", ["trainer.max_steps=20"])   # a packaged recipe, or a path to a YAML file
    fit(recipe, Path("runs/demo"), resume=False)
    report = evaluate(Path("runs/demo"))
"""

from convlstm.experiment.building import build_datamodule, build_dataset, build_model, build_task, build_trainer
from convlstm.experiment.exporting import EXPORT_FORMATS, export
from convlstm.experiment.pipeline import DemoResult, ModelSummary, demo, evaluate, fit, model_summaries, test
from convlstm.experiment.predicting import GridOptions, is_gridded, predict, predict_gridded
from convlstm.experiment.recipe import (
    TASK_KINDS,
    Recipe,
    RecipeError,
    apply_override,
    list_recipes,
    load_recipe,
    recipe_from_dict,
    recipe_help,
)
from convlstm.experiment.run_dir import DEMO_MARKER, RunDir
from convlstm.experiment.scoring import (
    evaluate_anomaly,
    evaluate_forecasters,
    evaluate_prednet,
    evaluate_segmentation,
    first_sequences,
    load_baselines,
    write_outputs,
)

__all__ = [
    "DEMO_MARKER",
    "EXPORT_FORMATS",
    "TASK_KINDS",
    "DemoResult",
    "GridOptions",
    "ModelSummary",
    "Recipe",
    "RecipeError",
    "RunDir",
    "apply_override",
    "build_datamodule",
    "build_dataset",
    "build_model",
    "build_task",
    "build_trainer",
    "demo",
    "evaluate",
    "evaluate_anomaly",
    "evaluate_forecasters",
    "evaluate_prednet",
    "evaluate_segmentation",
    "export",
    "first_sequences",
    "fit",
    "is_gridded",
    "list_recipes",
    "load_baselines",
    "load_recipe",
    "model_summaries",
    "predict",
    "predict_gridded",
    "recipe_from_dict",
    "recipe_help",
    "test",
    "write_outputs",
]
