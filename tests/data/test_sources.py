"""Every entry of SOURCES keeps the data package's conventions: ``root`` (when it reads files) then ``split`` come
first, every source reads the one default split when none is named, the window arguments of the file sources are
those of WindowOptions (same names, same defaults, documented there and not again), and each source builds from a
small file or generator and gives items of the window asked for."""

import dataclasses
import inspect
from pathlib import Path
from typing import Any

import pytest
import torch

from convlstm.data import WindowDataset, WindowOptions
from convlstm.data.core.splits import DEFAULT_SPLIT
from convlstm.data.sources import SOURCES, make_dataset, source_class
from tests.data.source_files import FILE_WRITERS, GENERATOR_ARGS

WINDOW_FIELDS = {field.name: field for field in dataclasses.fields(WindowOptions)}
#: (source, window argument) -> why its default differs from WindowOptions'
OWN_DEFAULTS = {("odim", "nan_policy"): "composites mark pixels outside the radars' reach as nodata: masked"}


def _parameters(source: str) -> list[inspect.Parameter]:
    return list(inspect.signature(source_class(source)).parameters.values())


def test_every_source_is_a_file_source_or_a_generator() -> None:
    assert set(FILE_WRITERS) | set(GENERATOR_ARGS) == set(SOURCES)
    assert not set(FILE_WRITERS) & set(GENERATOR_ARGS)


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_root_then_split_come_first_and_split_defaults_to_the_one_default(source: str) -> None:
    parameters = _parameters(source)
    positional = [p.name for p in parameters if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    head = ["root", "split"] if positional[0] == "root" else ["split"]
    assert positional[: len(head)] == head
    assert positional[len(head) :] in ([], ["transform"])  # torchvision's third argument, or keywords only
    if source in FILE_WRITERS:
        assert head == ["root", "split"], f"{source} reads files: it takes root first"
    split = next(p for p in parameters if p.name == "split")
    assert split.default == DEFAULT_SPLIT == "train"
    assert [p.kind for p in parameters].count(inspect.Parameter.VAR_KEYWORD) == 0  # make_dataset reads the names


@pytest.mark.parametrize("source", sorted(s for s in SOURCES if issubclass(source_class(s), WindowDataset)))
def test_window_arguments_are_those_of_window_options(source: str) -> None:
    cls = source_class(source)
    parameters = {p.name: p for p in _parameters(source)}
    assert {"context_frames", "target_frames", "stride", "transform"} <= set(parameters)
    for name in set(parameters) & set(WINDOW_FIELDS):
        parameter, field = parameters[name], WINDOW_FIELDS[name]
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, f"{source}: {name} is keyword-only"
        expected = inspect.Parameter.empty if field.default is dataclasses.MISSING else field.default
        if (source, name) not in OWN_DEFAULTS:
            assert parameter.default == expected, f"{source}: {name} defaults to {parameter.default!r}"
    # Documented once, in WindowOptions: the source's docstring points there and lists none of them under Args.
    doc = inspect.getdoc(cls) or ""
    assert "[`WindowOptions`][convlstm.data.WindowOptions]" in doc
    arguments = doc.partition("Args:")[2].partition("\n\n")[0]
    entries = [line for line in arguments.splitlines() if line.startswith("    ") and line[4] != " "]  # not wrapped
    documented = {line.strip().partition(":")[0] for line in entries}
    assert {"root", "split"} <= documented
    assert not documented & set(WINDOW_FIELDS), f"{source} documents {sorted(documented & set(WINDOW_FIELDS))} again"
    assert "as in WindowDataset" not in doc and "as in [`WindowDataset`]" not in doc


def _args(source: str, folder: Path) -> dict[str, Any]:
    if source in GENERATOR_ARGS:
        return {**GENERATOR_ARGS[source], "num_sequences": 3}
    return FILE_WRITERS[source](folder)


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_every_source_builds_from_a_small_file_or_generator(source: str, tmp_path: Path) -> None:
    args = _args(source, tmp_path)
    data = make_dataset(source, "train", context_frames=2, target_frames=2, seed=0, args=args)
    assert len(data) >= 1
    item = data[0]
    assert item["context"].dtype == torch.float32 and item["context"].shape[0] == 2
    assert torch.isfinite(item["context"]).all()
    if source != "shapes":  # segmentation: labels per context frame, no target frames
        assert item["target"].shape == (2, *item["context"].shape[1:])
    # The default split is the one named "train" (built without a split, from the same files).
    accepted = {p.name for p in _parameters(source)}
    by_default = source_class(source)(**args, **{k: 2 for k in ("context_frames", "target_frames") if k in accepted})
    assert len(by_default) == len(data)
    assert torch.equal(by_default[0]["context"], item["context"])


def test_window_options_check_every_field() -> None:
    assert WindowOptions(context_frames=3, target_frames=0).window_frames == 3
    with pytest.raises(ValueError, match=r"^context_frames must be an int >= 1, got 0$"):
        WindowOptions(context_frames=0, target_frames=1)
    with pytest.raises(ValueError, match=r"^target_frames must be an int >= 0, got float 1.5$"):
        WindowOptions(context_frames=1, target_frames=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^stride must be an int >= 1, got bool True$"):
        WindowOptions(context_frames=1, target_frames=1, stride=True)
    with pytest.raises(ValueError, match=r"^nan_policy must be one of \['raise', 'mask'\], got 'drop'$"):
        WindowOptions(context_frames=1, target_frames=1, nan_policy="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^value_scale must be a finite number, got nan$"):
        WindowOptions(context_frames=1, target_frames=1, value_scale=float("nan"))
    with pytest.raises(ValueError, match=r"^skip_invalid must be True or False, got int 1$"):
        WindowOptions(context_frames=1, target_frames=1, skip_invalid=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^transform must be callable or None, got str$"):
        WindowOptions(context_frames=1, target_frames=1, transform="crop")  # type: ignore[arg-type]
