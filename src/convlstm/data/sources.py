"""Data sources by name, so that recipes and the command line can say ``source: moving_mnist``."""

import inspect
from typing import Any

from torch.utils.data import Dataset

import convlstm.data as data
from convlstm.utils.checks import check_choice

#: recipe name -> class in [`convlstm.data`][convlstm.data]
SOURCES = {
    "moving_mnist": "MovingMNIST",
    "moving_mnist_file": "MovingMNISTFile",
    "bouncing_balls": "BouncingBalls",
    "radar": "SyntheticRadar",
    "shapes": "MovingShapesSegmentation",
    "anomalies": "AnomalySequences",
    "numpy": "NumpySequences",
    "hdf5": "HDF5Sequences",
    "kitti_hickle": "KittiHickle",
    "image_folders": "ImageFolderSequences",
    "video": "VideoSequences",
    "xarray": "XarraySequences",
    "odim": "ODIMSequences",
    "radar_archive": "RadarArchiveSequences",
    "mlcast": "MlcastSequences",
    "reanalysis": "ReanalysisSequences",
}


def source_class(source: str) -> type:
    """The dataset class that the recipe name ``source`` stands for (ValueError naming the known ones)."""
    return getattr(data, SOURCES[check_choice("data source", source, sorted(SOURCES))])


def make_dataset(
    source: str, split: str, *, context_frames: int, target_frames: int, seed: int, args: dict[str, Any]
) -> Dataset[Any]:
    """Builds the ``split`` partition of ``source``; ``args`` are the source's own constructor arguments.

    The frame counts and the seed are passed to sources that take them (a segmentation source has no targets,
    a file has no seed).
    """
    cls = source_class(source)
    accepted = inspect.signature(cls).parameters
    fixed = {"split", "context_frames", "target_frames", "seed", "transform"}
    clash = sorted(fixed & set(args))
    if clash:
        raise ValueError(f"data.args must not set {clash}: use data.context_frames / target_frames / seed instead")
    unknown = sorted(set(args) - set(accepted))
    if unknown:
        options = sorted(set(accepted) - fixed)
        raise ValueError(f"data.args {unknown} are not arguments of {cls.__name__} ({source}); it takes {options}")
    kwargs: dict[str, Any] = {"split": split, **args}
    for name, value in (("context_frames", context_frames), ("target_frames", target_frames), ("seed", seed)):
        if name in accepted:
            kwargs[name] = value
    required = [
        n for n, p in accepted.items() if p.default is p.empty and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    lacking = [n for n in required if n not in kwargs]
    if lacking:
        raise ValueError(
            f"data.args must set {lacking} for {cls.__name__} ({source}); it takes {sorted(set(accepted) - fixed)}"
        )
    return cls(**kwargs)
