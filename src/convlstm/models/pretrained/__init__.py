"""Models shipped inside the package, loaded by name, and the model cards that describe them.

A shipped model is a folder of this package, ``convlstm/models/pretrained/<name>/``, holding what
[`save_pretrained`][convlstm.models.PretrainedModel.save_pretrained] writes (``config.json``, ``model.safetensors``: no
pickle) and a ``MODEL_CARD.md`` written by [`ModelCard.write`][convlstm.models.ModelCard.write]. The wheel carries them
as package data and they are found with `importlib.resources`, so an installed package loads them without a download:

    import convlstm

    convlstm.list_pretrained()  # ["radar-nowcast", ...]
    model = convlstm.from_pretrained("radar-nowcast")  # or a directory written by save_pretrained
    card = convlstm.models.read_model_card("radar-nowcast")

A model card is Markdown with its facts in a YAML front matter (between two ``---`` lines, as Hugging Face's model
cards keep theirs), so that a person reads the card and ``convlstm nowcast`` reads the time step, units, context
frames and lead times it needs from the same file.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import torch
import yaml

from convlstm.models.base import CONFIG_FILE, WEIGHTS_FILE, PretrainedModel
from convlstm.models.base import from_pretrained as from_directory
from convlstm.utils.atomic import atomic_write_text

MODEL_CARD_FILE = "MODEL_CARD.md"
"""The file of a saved or shipped model's directory that describes it (Markdown with a YAML front matter)."""
#: Largest weights file a shipped model may have: the wheel carries every one of them.
MAX_SHIPPED_BYTES = 10 * 1024 * 1024


def _root() -> Traversable:
    """The folder the shipped models lie in (this package's own folder, inside a wheel or a checkout)."""
    return importlib.resources.files(__name__)


def list_pretrained() -> list[str]:
    """The names of the models shipped in the package, sorted: folders holding a config and safetensors weights."""
    return sorted(
        entry.name
        for entry in _root().iterdir()
        if entry.is_dir() and entry.joinpath(CONFIG_FILE).is_file() and entry.joinpath(WEIGHTS_FILE).is_file()
    )


def _shipped(name: str) -> Traversable | None:
    return _root().joinpath(name) if name in list_pretrained() else None


def resolve_pretrained(name_or_directory: str | os.PathLike[str]) -> tuple[str, Traversable]:
    """Where a model lies: ("directory", the folder) for an existing folder, ("shipped", its resource) for the name
    of a shipped model. A folder wins over a shipped model of the same name, as a path given is meant as a path.

    Raises:
        FileNotFoundError: neither; the message names the shipped models.
    """
    path = Path(name_or_directory).expanduser()
    if path.is_dir():
        return "directory", path
    if isinstance(name_or_directory, str):
        found = _shipped(name_or_directory)
        if found is not None:
            return "shipped", found
    shipped = list_pretrained()
    names = ", ".join(shipped) if shipped else "none yet"
    raise FileNotFoundError(
        f"model {str(name_or_directory)!r} not found: neither a directory written by save_pretrained nor the name "
        f"of a model shipped in the package (shipped: {names})"
    )


def from_pretrained(
    name_or_directory: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> PretrainedModel:
    """A model shipped in the package (by name, see [`list_pretrained`][convlstm.models.list_pretrained]) or saved with
    [`save_pretrained`][convlstm.models.PretrainedModel.save_pretrained] (a directory), weights included. Like a freshly
    built
    model it comes in training mode: call ``model.eval()`` before forecasting.

    Raises:
        FileNotFoundError: neither a directory nor a shipped name (the message lists the shipped names), or a
            directory without config.json or model.safetensors.
        ValueError: a config or weights that do not make a model (see
            `convlstm.models.base.from_pretrained`).
    """
    _, where = resolve_pretrained(name_or_directory)
    if isinstance(where, Path):
        return from_directory(where, device=device)
    # A package inside a zip file has no folder to hand to safetensors: copy its two files out first.
    with tempfile.TemporaryDirectory(prefix="convlstm-pretrained-") as tmp:
        for file in (CONFIG_FILE, WEIGHTS_FILE):
            with where.joinpath(file).open("rb") as source, open(Path(tmp) / file, "wb") as target:
                shutil.copyfileobj(source, target)
        return from_directory(tmp, device=device)


# ---------------------------------------------------------------------------------------------------- model cards
@dataclasses.dataclass
class DataSource:
    """One data set a model learnt from, as its card names it.

    Attributes:
        name: the data set ("pysteps-data, FMI events of 2016").
        provider: who made it ("Finnish Meteorological Institute").
        licence: its licence as the provider states it ("CC BY 4.0"), or what is known where none is stated.
        url: where it is published.
    """

    name: str
    provider: str
    licence: str
    url: str = ""


@dataclasses.dataclass
class ModelCard:
    """What a shipped model is, learnt from and is good for. [`write`][convlstm.models.ModelCard.write] renders it as
    ``MODEL_CARD.md``: the fields as a YAML front matter (read back by
    [`read_model_card`][convlstm.models.read_model_card]), then the same facts as prose.

    Attributes:
        name: the name the model ships under ("radar-nowcast").
        model: the registered model it is ("extrapolation_nowcast").
        summary: one paragraph: what it forecasts from what.
        data: the data sets it learnt from, with their licences.
        units: what its input and output frames hold ("mm/h": rain rate).
        timestep_minutes: time between the input frames, and between its lead times.
        context_frames: the last input frames it reads.
        lead_times: frames it forecasts by default.
        training: the training budget (steps, GPU and hours, the recipe).
        held_out_scores: forecaster -> score name -> value on the held-out events (the model beside the
            baselines), e.g. {"radar-nowcast": {"csi@1": 0.41}, "optical_flow": {"csi@1": 0.37}}.
        held_out: what the held-out scores were computed on (events, patches, lead times).
        limits: what it is not good for, one sentence each.
    """

    name: str
    model: str
    summary: str
    data: list[DataSource]
    units: str = "mm/h"
    timestep_minutes: float = 5.0
    context_frames: int = 4
    lead_times: int = 6
    training: str = ""
    held_out_scores: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    held_out: str = ""
    limits: list[str] = dataclasses.field(default_factory=list)

    def to_markdown(self) -> str:
        """The card as Markdown: the front matter, then the sections a reader looks for."""
        fields = dataclasses.asdict(self)
        front = yaml.safe_dump(fields, sort_keys=False, allow_unicode=True, width=120)
        sources = (
            "\n".join(f"| {d.name} | {d.provider} | {d.licence} | {d.url} |" for d in self.data)
            or "| (none given) | | | |"
        )
        metrics = sorted({m for scores in self.held_out_scores.values() for m in scores})
        if metrics:
            rows = [f"| forecaster | {' | '.join(metrics)} |", f"|---|{'---|' * len(metrics)}"]
            for who, scores in self.held_out_scores.items():
                rows.append(f"| {who} | " + " | ".join(_number(scores.get(m)) for m in metrics) + " |")
            table = "\n".join(rows)
        else:
            table = "(not given)"
        limits = "\n".join(f"- {limit}" for limit in self.limits) or "- (not given)"
        return (
            f"---\n{front}---\n\n"
            f"# {self.name}\n\n{self.summary}\n\n"
            f'Load it with `convlstm.from_pretrained("{self.name}")`; forecast radar files with '
            f"`convlstm nowcast FILES... --model {self.name} --out forecast.nc`.\n\n"
            f"## Inputs and outputs\n\n"
            f"- model: `{self.model}`\n"
            f"- units: {self.units}, in and out\n"
            f"- time step: {self.timestep_minutes:g} minutes between input frames and between lead times\n"
            f"- context: the last {self.context_frames} frames\n"
            f"- lead times: {self.lead_times} by default\n\n"
            f"## Data and licences\n\n| data | provider | licence | where |\n|---|---|---|---|\n{sources}\n\n"
            f"## Training budget\n\n{self.training or '(not given)'}\n\n"
            f"## Held-out scores\n\n{self.held_out or ''}\n\n{table}\n\n"
            f"## Limits\n\n{limits}\n"
        )

    def write(self, directory: str | os.PathLike[str]) -> Path:
        """Writes ``MODEL_CARD.md`` into ``directory`` (beside config.json and model.safetensors), atomically."""
        target = Path(directory) / MODEL_CARD_FILE
        atomic_write_text(target, self.to_markdown())
        return target


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def read_model_card(name_or_directory: str | os.PathLike[str]) -> ModelCard | None:
    """The card of a shipped model (by name) or of a saved model's directory; None when it has no MODEL_CARD.md.

    Raises:
        FileNotFoundError: neither a directory nor a shipped name.
        ValueError: a MODEL_CARD.md without a front matter that makes a [`ModelCard`][convlstm.models.ModelCard].
    """
    _, where = resolve_pretrained(name_or_directory)
    card = where.joinpath(MODEL_CARD_FILE)
    if not card.is_file():
        return None
    text = card.read_text(encoding="utf-8")
    head, separator, _ = text.removeprefix("---\n").partition("\n---\n")
    try:
        if not text.startswith("---\n") or not separator:
            raise ValueError("expected a YAML front matter between two '---' lines at its top")
        fields = yaml.safe_load(head)
        if not isinstance(fields, Mapping):
            raise ValueError(f"its front matter must be a mapping, got {type(fields).__name__}")
        return _card_from_fields(fields)
    except (yaml.YAMLError, ValueError, TypeError) as err:
        raise ValueError(f"{card}: not a model card written by ModelCard.write ({err})") from None


def _card_from_fields(fields: Mapping[str, Any]) -> ModelCard:
    known = {f.name for f in dataclasses.fields(ModelCard)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"unknown fields {unknown}; a card has {sorted(known)}")
    values = dict(fields)
    data = values.get("data") or []
    if not isinstance(data, Sequence) or not all(isinstance(d, Mapping) for d in data):
        raise ValueError(f"data must be a list of {{name, provider, licence, url}}, got {data!r}")
    values["data"] = [DataSource(**d) for d in data]
    return ModelCard(**values)


__all__ = [
    "MAX_SHIPPED_BYTES",
    "MODEL_CARD_FILE",
    "DataSource",
    "ModelCard",
    "from_pretrained",
    "list_pretrained",
    "read_model_card",
    "resolve_pretrained",
]
