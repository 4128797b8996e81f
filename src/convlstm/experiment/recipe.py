"""Recipes: one YAML file per application, read safely into typed sections, with command-line overrides.

A recipe names a data source, a registered model, a task and the Trainer settings; ``-o section.key=value``
overrides any entry (the value is read as YAML: ``-o trainer.max_epochs=3``, ``-o model.args.hidden_channels=[32]``).
Every value is then read as the type its key declares (`read_value`): a section's field, or for ``data.args``,
``model.args`` and ``task.args`` a parameter of the source, model or task (`read_arguments`; the optimisation settings
among ``task.args`` are fields of the task's ``OptimizationConfig``).
"""

import collections.abc
import contextlib
import dataclasses
import importlib.resources
import inspect
import os
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from convlstm.data.sources import SOURCES
from convlstm.metrics.forecast_metrics import BALANCED_METRICS
from convlstm.utils.checks import check_float, check_int

TaskKind = Literal["forecasting", "tbptt", "segmentation", "prednet", "anomaly"]
"""The task kinds a recipe can name; what each one means is its record in
[`TASK_KINDS`][convlstm.experiment.TASK_KINDS] (kept out of this module, which reads recipes without Lightning)."""


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class DataSection:
    """The ``data`` section: which source, its arguments, the frame counts and the loaders."""

    source: str = field(metadata=_help(f"data source: {', '.join(SOURCES)} (convlstm.data.sources)"))
    args: dict[str, Any] = field(default_factory=dict, metadata=_help("the source's own constructor arguments"))
    context_frames: int = field(default=10, metadata=_help("input frames per sequence"))
    target_frames: int = field(default=10, metadata=_help("frames to predict"))
    batch_size: int = field(default=16, metadata=_help("training batch size"))
    eval_batch_size: int | None = field(
        default=None, metadata=_help("validation/test batch size (default: batch_size)")
    )
    num_workers: int = field(default=0, metadata=_help("DataLoader worker processes"))
    train_sequences: int | None = field(default=None, metadata=_help("training sequences per epoch (generators)"))
    val_sequences: int | None = field(default=None, metadata=_help("validation sequences (generators)"))
    test_sequences: int | None = field(default=None, metadata=_help("test sequences (generators)"))


@dataclass
class ModelSection:
    """The ``model`` section: a registered model name and overrides of its builder's arguments."""

    name: str = field(metadata=_help("a registered model: `convlstm list-models` shows them"))
    args: dict[str, Any] = field(default_factory=dict, metadata=_help("overrides of the builder's arguments"))
    init_from: str | None = field(
        default=None, metadata=_help("start from the weights of a saved model directory (e.g. <run>/model)")
    )


@dataclass
class TaskSection:
    """The ``task`` section: the task kind and its arguments."""

    kind: TaskKind = field(
        default="forecasting",
        metadata=_help(f"{', '.join(typing.get_args(TaskKind)[:-1])} or {typing.get_args(TaskKind)[-1]}"),
    )
    args: dict[str, Any] = field(default_factory=dict, metadata=_help("the task's arguments (loss, lr, sampling, ...)"))


@dataclass
class TrainerSection:
    """The ``trainer`` section: the Lightning Trainer settings."""

    max_epochs: int | None = field(default=None, metadata=_help("stop after this many epochs"))
    max_steps: int = field(default=-1, metadata=_help("stop after this many optimizer steps (-1: no limit)"))
    max_minutes: float | None = field(default=None, metadata=_help("stop after this much wall time"))
    accelerator: str = field(default="auto", metadata=_help("auto, cpu or gpu"))
    devices: int = field(default=1, metadata=_help("devices per node (more than 1: DDP)"))
    num_nodes: int = field(default=1, metadata=_help("nodes (DDP)"))
    precision: str | None = field(
        default=None,
        metadata=_help("null: auto, bf16-mixed where the GPU or CPU (AMX, avx512_bf16) computes it, else 32-true"),
    )
    compile_gates: bool | None = field(
        default=None,
        metadata=_help("null: auto, the ConvLSTM gates through torch.compile on CPUs where it builds; true, false"),
    )
    gradient_clip_val: float | None = field(default=1.0, metadata=_help("clip the gradient norm (null: no clip)"))
    checkpoint_every_minutes: float | None = field(
        default=10.0,
        metadata=_help("also write last.ckpt between two steps every this many minutes (null: after validation only)"),
    )
    save_top_k: int = field(
        default=1, metadata=_help("checkpoints kept, the best by validation loss (-1: one per validation, all kept)")
    )
    early_stopping_patience: int | None = field(default=10, metadata=_help("validations without gain before stop"))
    limit_train_batches: int | float | None = field(default=None, metadata=_help("batches per training epoch"))
    limit_val_batches: int | float | None = field(default=None, metadata=_help("batches per validation"))
    val_check_interval: int | None = field(
        default=None, metadata=_help("validate every this many training steps (default: after every epoch)")
    )
    log_every_n_steps: int = field(default=10, metadata=_help("logging period in steps"))
    enable_progress_bar: bool = field(default=True, metadata=_help("show the progress bar"))


@dataclass
class EvaluateSection:
    """The ``evaluate`` section: what ``convlstm evaluate`` scores and shows."""

    baselines: list[str] | None = field(
        default=None, metadata=_help("registered baselines (null: the task kind's, persistence for forecasters)")
    )
    num_sequences: int | None = field(default=None, metadata=_help("test sequences to score (default: all)"))
    animations: int = field(default=2, metadata=_help("GIF animations of test sequences in the report"))
    rain_thresholds: list[float] | None = field(default=None, metadata=_help("mm/h thresholds for CSI/POD/FAR/HSS"))
    extra_metrics: list[str] = field(
        default_factory=list, metadata=_help("scores beside the defaults: bce_per_sequence, b_mse, b_mae")
    )
    clip: bool = field(
        default=True,
        metadata=_help("clip forecasts to what frames hold (pixels to [0, 1], mm/h to >= 0); false for unbounded data"),
    )


@dataclass
class Recipe:
    """A whole recipe: data, model, task, Trainer and evaluation, plus a name and a seed."""

    name: str = field(metadata=_help("run name: the run directory is runs/<name> unless --run-dir says otherwise"))
    data: DataSection = field(metadata=_help("what to learn from"))
    model: ModelSection = field(metadata=_help("which network"))
    task: TaskSection = field(default_factory=TaskSection, metadata=_help("how to train it"))
    trainer: TrainerSection = field(default_factory=TrainerSection, metadata=_help("the Lightning Trainer"))
    evaluate: EvaluateSection = field(default_factory=EvaluateSection, metadata=_help("`convlstm evaluate`"))
    seed: int = field(default=0, metadata=_help("seeds data, initialisation and training"))
    description: str = field(default="", metadata=_help("one line shown in reports"))

    def to_dict(self) -> dict[str, Any]:
        """The recipe as nested plain dicts, as YAML stores it."""
        return dataclasses.asdict(self)


#: The longest max_minutes (and checkpoint_every_minutes): about 1900 years, far inside what datetime.timedelta can
#: hold.
MAX_MINUTES = 1e9


#: Scores `convlstm evaluate` adds on request; the balanced ones weigh errors by the true rain rate.
EXTRA_METRICS = ("bce_per_sequence", *BALANCED_METRICS)


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the file, the key, what was expected and what came."""


#: The package that holds the shipped recipes (``src/convlstm/recipes/*.yaml``).
RECIPES_PACKAGE = "convlstm.recipes"


def list_recipes() -> list[str]:
    """The names of the recipes shipped inside the package, sorted (``demo``, ``moving_mnist``, ...)."""
    folder = importlib.resources.files(RECIPES_PACKAGE)
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def recipe_source(name_or_path: str | os.PathLike[str]) -> tuple[str, str]:
    """The YAML text of a recipe and where it came from: a file path, or the bare name of a packaged recipe.

    A value that names an existing file, or looks like a path (it has a folder or a .yaml / .yml suffix), is read as
    a file; any other is looked up among [`list_recipes`][convlstm.experiment.list_recipes].

    Raises:
        FileNotFoundError: no such file, or no packaged recipe of that name.
    """
    path = Path(name_or_path)
    looks_like_path = path.is_file() or len(path.parts) > 1 or path.suffix in (".yaml", ".yml")
    if looks_like_path:
        if not path.is_file():
            raise FileNotFoundError(
                f"recipe {path} not found; give a YAML file or the name of a packaged recipe: {list_recipes()}"
            )
        return path.read_text(encoding="utf-8"), str(path)
    name = str(name_or_path)
    if name not in list_recipes():
        raise FileNotFoundError(
            f"recipe {name!r} is neither a file nor a packaged recipe; packaged recipes: {list_recipes()}"
        )
    resource = importlib.resources.files(RECIPES_PACKAGE).joinpath(f"{name}.yaml")
    return resource.read_text(encoding="utf-8"), f"{name} (packaged recipe)"


def load_recipe(name_or_path: str | os.PathLike[str], overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Reads a YAML recipe (yaml.safe_load: no Python objects), applies ``key=value`` overrides, checks types.

    Args:
        name_or_path: a YAML file, or the bare name of a packaged recipe (``"demo"``; see
            [`list_recipes`][convlstm.experiment.list_recipes]).
        overrides: ``section.key=value`` strings, the value read as YAML.
    """
    try:
        text, origin = recipe_source(name_or_path)
    except UnicodeDecodeError as err:
        raise RecipeError(f"{name_or_path} is not valid YAML: {err}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise RecipeError(f"{origin} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"{origin} must hold a mapping of sections, got {type(raw).__name__}")
    for override in overrides:
        apply_override(raw, override)
    return recipe_from_dict(raw, origin=origin)


def recipe_from_dict(raw: dict[str, Any], *, origin: str = "recipe") -> Recipe:
    """Checks a recipe given as nested dicts (as read from YAML) and builds it; ``origin`` names it in errors."""
    recipe: Recipe = _build(Recipe, raw, origin)
    _check_values(recipe, origin)
    return recipe


def _check_values(recipe: Recipe, where: str) -> None:
    """The checks that a type cannot express."""
    name = recipe.name
    # The name becomes the directory runs/<name>: a path in it would put the run (and its outputs) elsewhere.
    if not name.strip() or name in (".", "..") or any(c in name for c in ("/", "\\", "\0")):
        raise RecipeError(f"{where}.name must be a plain directory name (the run goes to runs/<name>), got {name!r}")
    t = recipe.trainer
    with _as_recipe_error():
        check_int(f"{where}.seed", recipe.seed, 0, 2**32 - 1)
        check_int(f"{where}.trainer.save_top_k", t.save_top_k, minimum=-1)  # -1: all
    for key, value, null in (
        ("max_minutes", t.max_minutes, "no time limit"),
        ("checkpoint_every_minutes", t.checkpoint_every_minutes, "after validation only"),
    ):
        if value is not None:
            with _as_recipe_error(f"; null: {null}"):
                check_float(f"{where}.trainer.{key}", value, 0.0, MAX_MINUTES, low_open=True)
    if t.val_check_interval is not None:
        with _as_recipe_error("; null: after every epoch"):
            check_int(f"{where}.trainer.val_check_interval", t.val_check_interval)  # training steps
    extra = recipe.evaluate.extra_metrics
    unknown = [m for m in extra if m not in EXTRA_METRICS]
    if unknown or len(set(extra)) != len(extra):
        raise RecipeError(f"{where}.evaluate.extra_metrics must be distinct names from {EXTRA_METRICS}, got {extra}")
    if any(m in BALANCED_METRICS for m in extra) and recipe.evaluate.rain_thresholds is None:
        raise RecipeError(f"{where}.evaluate.extra_metrics {extra}: b_mse and b_mae need evaluate.rain_thresholds")


@contextlib.contextmanager
def _as_recipe_error(hint: str = "") -> Iterator[None]:
    """A failed check (`convlstm.utils.checks`) as a RecipeError, its message followed by ``hint``."""
    try:
        yield
    except ValueError as err:
        raise RecipeError(f"{err}{hint}") from None


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Sets ``a.b.c=value`` in a nested dict; the value is parsed as YAML (numbers, lists, null, ...)."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"an override must look like section.key=value, got {override!r}")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise RecipeError(f"override {override!r}: the value is not valid YAML ({err})") from None
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise RecipeError(f"override {override!r}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise RecipeError(f"{where} must be a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise RecipeError(f"{where}: unknown keys {unknown}; expected some of {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        key = f"{where}.{name}"
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise RecipeError(f"{key} is required ({f.metadata.get('help', '')})")
            continue
        hint = hints[name]
        is_section = isinstance(hint, type) and dataclasses.is_dataclass(hint)
        values[name] = _build(hint, raw[name], key) if is_section else read_value(raw[name], hint, key)
    return cls(**values)


def read_value(value: Any, hint: Any, where: str) -> Any:
    """``value`` as the type ``hint`` declares, for the recipe key ``where``.

    YAML 1.1, which PyYAML reads, takes a number without a dot (``1e-3``, ``5e+2``, ``-.5``) for a string: where a
    float is expected such a string becomes the float, and an int becomes a float too. A string stays a string where
    one fits (a ``str`` parameter given ``1e-3`` keeps ``"1e-3"``). Lists, unions and ``Literal`` are read item by
    item and option by option; a hint this does not know (a class, a callable, ``Any``) takes the value as it is.

    Raises:
        RecipeError: the value does not fit; the message names ``where``, the value and the expected type.
    """
    return _read(value, hint, where, convert=True)


def read_arguments(
    receiver: Callable[..., Any], args: Mapping[str, Any], where: str, *, kwargs_to: Callable[..., Any] | None = None
) -> dict[str, Any]:
    """``args`` read (`read_value`) as the types that ``receiver``'s parameters declare.

    Args:
        receiver: The function or class that will be called with ``args``.
        args: Keyword arguments from a recipe (``task.args``, ``model.args``, ``data.args``).
        where: The recipe key of ``args``, for errors: ``"task.args"`` names ``task.args.lr``.
        kwargs_to: Where ``receiver`` passes on what its ``**kwargs`` take (a model builder's overrides go to its
            model class); without it such arguments, like unannotated ones, are kept as they are.

    Returns:
        The arguments, converted; a name ``receiver`` does not take is kept, for the call to reject.
    """
    parameters = inspect.signature(receiver, eval_str=True).parameters  # a class: those of its __init__
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    read: dict[str, Any] = {}
    for name, value in args.items():
        parameter = parameters.get(name)
        if parameter is not None and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            annotated = parameter.annotation is not parameter.empty
            read[name] = read_value(value, parameter.annotation, f"{where}.{name}") if annotated else value
        elif parameter is None and takes_kwargs and kwargs_to is not None:
            read.update(read_arguments(kwargs_to, {name: value}, where))
        else:
            read[name] = value
    return read


#: The containers a list from YAML may stand for.
_SEQUENCES = (list, tuple, collections.abc.Sequence)


def _read(value: Any, hint: Any, where: str, *, convert: bool) -> Any:
    """`read_value`; with ``convert`` false only a value of the very type fits (a union tries those first)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        # An option the value already is wins (a str stays one in ``str | float``); then one it converts to.
        for converting in (False, True) if convert else (False,):
            for option in typing.get_args(hint):
                try:
                    return _read(value, option, where, convert=converting)
                except RecipeError:
                    continue
        raise RecipeError(f"{where} must be {_describe(hint)}, got {value!r}")
    if origin is Literal:
        if not any(value == v and type(value) is type(v) for v in typing.get_args(hint)):
            raise RecipeError(f"{where} must be one of {list(typing.get_args(hint))}, got {value!r}")
        return value
    if origin in _SEQUENCES or hint in (list, tuple):
        if not isinstance(value, list | tuple):
            raise RecipeError(f"{where} must be {_describe(hint)}, got {value!r}")
        items = typing.get_args(hint)
        if not items:
            items = (Any,) * len(value)
        elif len(items) == 1 or (len(items) == 2 and items[1] is Ellipsis):  # list[float], tuple[float, ...]
            items = (items[0],) * len(value)
        elif len(items) != len(value):  # tuple[float, float]
            raise RecipeError(f"{where} must be {_describe(hint)}, got {value!r}")
        return type(value)(
            _read(v, h, f"{where}[{i}]", convert=convert) for i, (v, h) in enumerate(zip(value, items, strict=True))
        )
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{where} must be a mapping, got {value!r}")
        item = typing.get_args(hint)[1] if typing.get_args(hint) else Any
        return {k: _read(v, item, f"{where}.{k}", convert=convert) for k, v in value.items()}
    if hint is type(None):
        if value is not None:
            raise RecipeError(f"{where} must be null, got {value!r}")
        return value
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if hint is float and (isinstance(value, float) or (convert and is_int)):
        return float(value)
    if hint is float and convert and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if hint is int and is_int:
        return value
    if hint in (str, bool) and isinstance(value, hint):
        return value
    if hint in (float, int, str, bool) or not convert:
        raise RecipeError(f"{where} must be {_describe(hint)}, got {value!r}")
    return value  # a type this does not read (a path, a callable, a split object): the receiver checks it


def _describe(hint: Any) -> str:
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return f"one of {list(args)}"
    if origin in _SEQUENCES:
        if len(args) == 1 or (len(args) == 2 and args[1] is Ellipsis):
            return f"a list of {_describe(args[0])}"
        return f"a list of [{', '.join(_describe(a) for a in args)}]"
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def recipe_help() -> str:
    """Every recipe key with its default and meaning, for ``--help``."""
    lines = ["recipe keys (YAML; override any with -o section.key=value):"]
    for section in dataclasses.fields(Recipe):
        hint = typing.get_type_hints(Recipe)[section.name]
        if dataclasses.is_dataclass(hint):
            lines.append(f"  {section.name}:  {section.metadata.get('help', '')}")
            for f in dataclasses.fields(hint):
                default = "required" if _required(f) else f"default {_default(f)!r}"
                lines.append(f"    {section.name}.{f.name}: {f.metadata.get('help', '')} ({default})")
        else:
            default = "required" if _required(section) else f"default {_default(section)!r}"
            lines.append(f"  {section.name}: {section.metadata.get('help', '')} ({default})")
    return "\n".join(lines)


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _default(f: dataclasses.Field[Any]) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
