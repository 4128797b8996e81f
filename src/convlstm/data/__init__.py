"""Data: seeded offline generators for every application and loaders for the formats real data comes in.

Items are torchvision-style dicts of float32 tensors: "formats.context" (T_in, C, H, W), "target" (T_out, C, H, W), plus
"labels" / "mask" where they apply, and "weight" (an importance weight) for patches drawn in favour of rain.
Lightning DataModules live in [`convlstm.tasks`][convlstm.tasks] (nothing here imports Lightning).

The package has three parts, and every public name is importable from here (``from convlstm.data import X``):

- ``synthetic/``: the seeded generators (Moving MNIST, bouncing balls, synthetic radar, shapes, anomalies);
- ``formats/``: the file formats (numpy, HDF5, hickle, image folders, video, xarray / zarr, reanalysis, ODIM,
  pysteps radar archives, mlcast stores) and the forecast writers;
- ``core/``: what both build on: recordings and windows, splits, sampling, normalisation, transforms, collate,
  DataLoader workers, scene cuts.

Names are imported on first use: the loaders pull in h5py, hickle, xarray, scipy and ffmpeg, and a user of one
source should not wait for all of them.
"""

from typing import TYPE_CHECKING

from convlstm.utils.lazy import lazy_exports

_SOURCES = {
    "AnomalySequences": "synthetic.anomalies",
    "BouncingBalls": "synthetic.bouncing_balls",
    "CenterCrop": "core.transforms",
    "ChunkAwareSampler": "core.sampling",
    "Compose": "core.transforms",
    "HDF5Sequences": "formats.hdf5",
    "ImageFolderSequences": "formats.image_folders",
    "KittiHickle": "formats.hickle_kitti",
    "MlcastSequences": "formats.mlcast",
    "MovingMNIST": "synthetic.moving_mnist",
    "MovingMNISTFile": "synthetic.moving_mnist",
    "MovingShapesSegmentation": "synthetic.shapes",
    "Normalization": "core.normalization",
    "ODIMSequences": "formats.odim",
    "NumpySequences": "formats.numpy_arrays",
    "RadarArchiveSequences": "formats.radar_archive",
    "RainBiasedPatches": "core.sampling",
    "RandomCrop": "core.transforms",
    "ReanalysisSequences": "formats.reanalysis",
    "Recording": "core.windows",
    "RecordingSplit": "core.splits",
    "Resize": "core.transforms",
    "SyntheticRadar": "synthetic.radar",
    "TimeBlockSplit": "core.splits",
    "VideoSequences": "formats.video",
    "WindowCoords": "formats.xarray_source",
    "WindowDataset": "core.windows",
    "WindowOptions": "core.windows",
    "init_worker": "core.workers",
    "pad_collate": "core.collate",
    "pad_sequences": "core.collate",
    "XarraySequences": "formats.xarray_source",
    "read_video": "formats.video",
    "write_forecast_netcdf": "formats.forecast_netcdf",
    "write_mlcast_forecast": "formats.mlcast_forecast",
    "find_scene_cuts": "core.scene_cuts",
    "select_split": "core.splits",
    "flip_rotate": "core.transforms",
    "split_indices": "core.splits",
    "to_tchw": "core.layout",
}

__all__ = sorted(_SOURCES)


__getattr__, __dir__ = lazy_exports(__name__, _SOURCES)


if TYPE_CHECKING:
    from convlstm.data.core.collate import pad_collate as pad_collate
    from convlstm.data.core.collate import pad_sequences as pad_sequences
    from convlstm.data.core.layout import to_tchw as to_tchw
    from convlstm.data.core.normalization import Normalization as Normalization
    from convlstm.data.core.sampling import ChunkAwareSampler as ChunkAwareSampler
    from convlstm.data.core.sampling import RainBiasedPatches as RainBiasedPatches
    from convlstm.data.core.scene_cuts import find_scene_cuts as find_scene_cuts
    from convlstm.data.core.splits import (
        RecordingSplit as RecordingSplit,
    )
    from convlstm.data.core.splits import (
        TimeBlockSplit as TimeBlockSplit,
    )
    from convlstm.data.core.splits import (
        select_split as select_split,
    )
    from convlstm.data.core.splits import (
        split_indices as split_indices,
    )
    from convlstm.data.core.transforms import (
        CenterCrop as CenterCrop,
    )
    from convlstm.data.core.transforms import (
        Compose as Compose,
    )
    from convlstm.data.core.transforms import (
        RandomCrop as RandomCrop,
    )
    from convlstm.data.core.transforms import (
        Resize as Resize,
    )
    from convlstm.data.core.transforms import (
        flip_rotate as flip_rotate,
    )
    from convlstm.data.core.windows import Recording as Recording
    from convlstm.data.core.windows import WindowDataset as WindowDataset
    from convlstm.data.core.windows import WindowOptions as WindowOptions
    from convlstm.data.core.workers import init_worker as init_worker
    from convlstm.data.formats.forecast_netcdf import write_forecast_netcdf as write_forecast_netcdf
    from convlstm.data.formats.hdf5 import HDF5Sequences as HDF5Sequences
    from convlstm.data.formats.hickle_kitti import KittiHickle as KittiHickle
    from convlstm.data.formats.image_folders import ImageFolderSequences as ImageFolderSequences
    from convlstm.data.formats.mlcast import MlcastSequences as MlcastSequences
    from convlstm.data.formats.mlcast_forecast import write_mlcast_forecast as write_mlcast_forecast
    from convlstm.data.formats.numpy_arrays import NumpySequences as NumpySequences
    from convlstm.data.formats.odim import ODIMSequences as ODIMSequences
    from convlstm.data.formats.radar_archive import RadarArchiveSequences as RadarArchiveSequences
    from convlstm.data.formats.reanalysis import ReanalysisSequences as ReanalysisSequences
    from convlstm.data.formats.video import VideoSequences as VideoSequences
    from convlstm.data.formats.video import read_video as read_video
    from convlstm.data.formats.xarray_source import WindowCoords as WindowCoords
    from convlstm.data.formats.xarray_source import XarraySequences as XarraySequences
    from convlstm.data.synthetic.anomalies import AnomalySequences as AnomalySequences
    from convlstm.data.synthetic.bouncing_balls import BouncingBalls as BouncingBalls
    from convlstm.data.synthetic.moving_mnist import MovingMNIST as MovingMNIST
    from convlstm.data.synthetic.moving_mnist import MovingMNISTFile as MovingMNISTFile
    from convlstm.data.synthetic.radar import SyntheticRadar as SyntheticRadar
    from convlstm.data.synthetic.shapes import MovingShapesSegmentation as MovingShapesSegmentation
