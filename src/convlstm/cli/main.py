"""The ``convlstm`` command line."""

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from convlstm.experiment.recipe import RecipeError, list_recipes, load_recipe, recipe_help
from convlstm.utils.extras import missing_extra_message
from convlstm.utils.version import __version__

logger = logging.getLogger("convlstm")


def _add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        required=True,
        help=f"a YAML recipe file, or the name of a packaged recipe: {', '.join(list_recipes())}",
    )
    parser.add_argument(
        "--override",
        "-o",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe entry, e.g. -o trainer.max_epochs=3 -o data.batch_size=8 (value read as YAML)",
    )
    parser.add_argument("--run-dir", help="where the run lives (default: runs/<recipe name>)")


def _add_run_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", required=True, help="a run directory written by `convlstm fit`")


def _json_object(text: str) -> dict[str, object]:
    try:
        value = json.loads(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({err})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object ({{...}}), got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="convlstm",
        description="Train, evaluate and export convolutional recurrent networks for image sequences.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log debug messages")
    parser.add_argument("--version", action="version", version=f"convlstm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fit = commands.add_parser(
        "fit",
        help="train a model from a recipe",
        description="Train the recipe's model on its data; checkpoints and logs go to the run directory.",
        epilog=recipe_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_recipe_arguments(fit)
    fit.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    fit.add_argument(
        "--overwrite", action="store_true", help="replace the run already in --run-dir (its checkpoints are lost)"
    )

    test = commands.add_parser("test", help="score the best checkpoint on the test split (Lightning test loop)")
    _add_run_dir(test)

    evaluate = commands.add_parser(
        "evaluate", help="the trained model and baselines side by side: metrics.json, plots, GIFs, report.html"
    )
    _add_run_dir(evaluate)
    evaluate.add_argument("--baselines", nargs="*", help="registered baselines (default: the recipe's)")
    evaluate.add_argument("--num-sequences", type=int, help="test sequences to score (default: the recipe's)")

    predict = commands.add_parser(
        "predict",
        help="forecast from frames in a .npy file (writes .npy and a GIF) or a netCDF / zarr file (writes netCDF)",
    )
    _add_run_dir(predict)
    predict.add_argument(
        "--input",
        required=True,
        help=".npy of frames (T, C, H, W) or sequences (N, T, C, H, W), a netCDF file (.nc) or a zarr store (.zarr)",
    )
    predict.add_argument(
        "--output", required=True, help="output folder for predictions.npy and predictions.gif, or predictions.nc"
    )
    predict.add_argument("--horizon", type=int, help="frames to predict (default: the recipe's target_frames)")
    grid = predict.add_argument_group(
        "netCDF / zarr input", "as the xarray data source reads it; defaults come from the recipe's data.args"
    )
    grid.add_argument("--variables", nargs="+", metavar="NAME", help="variables to read, in channel order")
    grid.add_argument("--time-dim", help="name of the time dimension (default: time)")
    grid.add_argument("--y-dim", help="name of the y dimension (default: lat)")
    grid.add_argument("--x-dim", help="name of the x dimension (default: lon)")
    grid.add_argument("--engine", help="xarray engine (default: zarr for zarr stores, else xarray's choice)")
    grid.add_argument(
        "--windows",
        choices=["last", "all"],
        default="last",
        help="last: one forecast from the last context frames (default); all: one from every window whose lead "
        "times lie inside the input, along an init_time dimension",
    )

    nowcast = commands.add_parser(
        "nowcast",
        help="forecast rain from the last radar files (any format pysteps reads) or the last frames of an mlcast "
        "archive into a CF netCDF file or zarr store",
        description="Reads the radar files with a pysteps importer, or the last frames of a zarr store in the mlcast "
        "convention, converts them to rain rate (mm/h), forecasts from the last frames the model reads and writes "
        "the forecast on their grid, with its CRS, latitude and longitude, as CF netCDF (.nc) or zarr (.zarr); the "
        "forecast of an mlcast store is a store in the same convention. Pixels without coverage in the last frame "
        "are NaN in the forecast.",
    )
    nowcast.add_argument(
        "files",
        nargs="+",
        metavar="FILES",
        help="radar files, their times in their names; or one zarr store in the mlcast convention (a path or an "
        "s3://, gs://, https:// URL)",
    )
    nowcast.add_argument(
        "--out",
        required=True,
        help="the forecast to write: a netCDF file (forecast.nc) or a zarr store (forecast.zarr)",
    )
    nowcast.add_argument(
        "--model",
        default="radar-nowcast",
        help="a model shipped in the package (default: radar-nowcast) or a directory written by save_pretrained "
        "(e.g. runs/<name>/model)",
    )
    nowcast.add_argument(
        "--importer",
        help="pysteps importer (fmi_pgm, knmi_hdf5, odim_hdf5, mch_gif, bom_rf3, ...; default: guessed from the "
        "extension where one importer reads it)",
    )
    nowcast.add_argument(
        "--importer-kwargs",
        type=_json_object,
        metavar="JSON",
        help='keyword arguments of the importer as a JSON object, e.g. \'{"qty": "ACRR", "accutime": 5}\'',
    )
    nowcast.add_argument(
        "--timestep", type=float, metavar="MIN", help="minutes between the files (default: from their times)"
    )
    nowcast.add_argument(
        "--lead-times", type=int, metavar="N", help="frames to forecast (default: the model card's or the model's)"
    )
    nowcast.add_argument(
        "--init-time",
        metavar="TIME",
        help="an mlcast store: forecast from the frames ending at this time, e.g. 2023-06-01T12:00 (default: its last)",
    )
    nowcast.add_argument(
        "--storage-options",
        type=_json_object,
        metavar="JSON",
        help="an mlcast store at a URL: options of its fsspec filesystem, e.g. '{\"anon\": true}'",
    )

    export = commands.add_parser(
        "export", help="write the best model as safetensors + config, ONNX (model.onnx) and torch.export (model.pt2)"
    )
    _add_run_dir(export)
    export.add_argument("--output", required=True, help="output folder")
    export.add_argument(
        "--format",
        dest="formats",
        nargs="+",
        choices=["safetensors", "onnx", "torch"],
        help="formats to write (default: every one that works for the model; a named one that fails is an error)",
    )
    export.add_argument(
        "--frame-shape",
        nargs=3,
        type=int,
        metavar=("C", "H", "W"),
        help="frame size for ONNX / torch.export (default: read from a test item of the recipe's data)",
    )

    listing = commands.add_parser("list-models", help="registered models with their parameter counts")
    listing.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'shi2015_*'")

    demo = commands.add_parser(
        "demo", help="train on generated bouncing balls for a few minutes, evaluate against persistence, write a report"
    )
    demo.add_argument("--run-dir", default="runs/demo", help="output directory (default: runs/demo)")
    demo.add_argument("--minutes", type=float, default=4.0, help="training time budget (default: 4)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command; returns 0, or 2 after printing a one-line error for a bad recipe, file or argument."""
    args = build_parser().parse_args(argv)
    # Our messages only: Lightning configures its own logger, and a root handler would print its lines twice.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return _dispatch(args)
    except (RecipeError, ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"convlstm {args.command}: error: {err}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:
        message = missing_extra_message(err)
        if message is None:
            raise
        print(f"convlstm {args.command}: error: {message}", file=sys.stderr)
        return 2
    finally:
        # Called again in the same process (tests, notebooks), a kept handler would print twice, or to a closed
        # stream.
        logger.removeHandler(handler)


def _dispatch(args: argparse.Namespace) -> int:
    from convlstm import experiment

    if args.command == "list-models":
        summaries = experiment.model_summaries(args.pattern)
        width = max(len(s.name) for s in summaries)
        for summary in summaries:
            print(f"{summary.name:<{width}}  {summary.parameters:>12,}  {summary.class_name}")
        return 0
    if args.command == "fit":
        recipe = load_recipe(args.config, args.override)
        run_dir = Path(args.run_dir or Path("runs") / recipe.name)
        try:
            experiment.fit(recipe, run_dir, resume=args.resume, overwrite=args.overwrite)
        except experiment.TrainingInterrupted as stop:
            print(f"convlstm fit: {stop}; to go on: {stop.resume_command}", file=sys.stderr)
            return stop.exit_code
        return 0
    if args.command == "test":
        print(json.dumps(experiment.test(Path(args.run_dir)), indent=2))
        return 0
    if args.command == "evaluate":
        report = experiment.evaluate(Path(args.run_dir), baselines=args.baselines, num_sequences=args.num_sequences)
        print(f"wrote {report}")
        return 0
    if args.command == "predict":
        grid = experiment.GridOptions(
            variables=args.variables,
            time_dim=args.time_dim,
            y_dim=args.y_dim,
            x_dim=args.x_dim,
            engine=args.engine,
            windows=args.windows,
        )
        experiment.predict(Path(args.run_dir), Path(args.input), Path(args.output), horizon=args.horizon, grid=grid)
        return 0
    if args.command == "nowcast":
        forecast = experiment.nowcast(
            args.files,
            Path(args.out),
            model=args.model,
            importer=args.importer,
            importer_kwargs=args.importer_kwargs,
            timestep=args.timestep,
            lead_times=args.lead_times,
            init_time=args.init_time,
            storage_options=args.storage_options,
        )
        print(f"wrote {forecast}")
        return 0
    if args.command == "export":
        written = experiment.export(
            Path(args.run_dir), Path(args.output), formats=args.formats, frame_shape=args.frame_shape
        )
        for path in written:
            print(f"wrote {path}")
        return 0
    if args.command == "demo":
        return demo(Path(args.run_dir), minutes=args.minutes)
    raise AssertionError(args.command)


def demo(run_dir: Path, *, minutes: float) -> int:
    """Runs [`convlstm.experiment.demo`][convlstm.experiment.demo] (the packaged ``demo`` recipe) and prints its
    scores."""
    from convlstm import experiment

    result = experiment.demo(run_dir, minutes=minutes)
    recipe = result.recipe
    model, baseline = result.model_mse_per_frame, result.persistence_mse_per_frame
    frames = f"{recipe.data.context_frames} -> {recipe.data.target_frames} frames"
    print(f"\n{recipe.data.source}, {frames}, {recipe.data.test_sequences} test sequences:")
    print(
        f"  trained {result.steps} steps in {minutes:g} minutes (the score improves with the steps a machine manages)"
    )
    print(f"  MSE per frame: {recipe.model.name} {model:.1f}, persistence {baseline:.1f} ({baseline / model:.2f}x)")
    print(f"  report: {result.report}\n  metrics: {run_dir / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
