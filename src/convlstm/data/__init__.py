"""Data: seeded offline generators for every application and loaders for the formats real data comes in.

Items are torchvision-style dicts of float32 tensors: "context" (T_in, C, H, W), "target" (T_out, C, H, W), plus
"labels" / "mask" where they apply, and "weight" (an importance weight) for patches drawn in favour of rain.
Lightning DataModules live in [`convlstm.tasks`][convlstm.tasks] (nothing here imports Lightning).

Names are imported on first use: the loaders pull in h5py, hickle, xarray, scipy and ffmpeg, and a user of one
source should not wait for all of them.
"""

from typing import TYPE_CHECKING

from convlstm.utils.lazy import lazy_exports

_SOURCES = {
    "AnomalySequences": "anomalies",
    "BouncingBalls": "bouncing_balls",
    "CenterCrop": "transforms",
    "ChunkAwareSampler": "sampling",
    "Compose": "transforms",
    "HDF5Sequences": "hdf5",
    "ImageFolderSequences": "image_folders",
    "KittiHickle": "hickle_kitti",
    "MlcastSequences": "mlcast",
    "MovingMNIST": "moving_mnist",
    "MovingMNISTFile": "moving_mnist",
    "MovingShapesSegmentation": "shapes",
    "Normalization": "normalization",
    "ODIMSequences": "odim",
    "NumpySequences": "numpy_arrays",
    "RadarArchiveSequences": "radar_archive",
    "RainBiasedPatches": "sampling",
    "RandomCrop": "transforms",
    "ReanalysisSequences": "reanalysis",
    "Recording": "windows",
    "RecordingSplit": "splits",
    "Resize": "transforms",
    "SyntheticRadar": "radar",
    "TimeBlockSplit": "splits",
    "VideoSequences": "video",
    "WindowCoords": "xarray_source",
    "WindowDataset": "windows",
    "init_worker": "workers",
    "pad_collate": "collate",
    "pad_sequences": "collate",
    "XarraySequences": "xarray_source",
    "read_video": "video",
    "write_forecast_netcdf": "forecast_netcdf",
    "write_mlcast_forecast": "mlcast_forecast",
    "find_scene_cuts": "scene_cuts",
    "select_split": "splits",
    "flip_rotate": "transforms",
    "split_indices": "splits",
    "to_tchw": "layout",
}

__all__ = sorted(_SOURCES)


__getattr__, __dir__ = lazy_exports(__name__, _SOURCES)


if TYPE_CHECKING:
    from convlstm.data.anomalies import AnomalySequences as AnomalySequences
    from convlstm.data.bouncing_balls import BouncingBalls as BouncingBalls
    from convlstm.data.collate import pad_collate as pad_collate
    from convlstm.data.collate import pad_sequences as pad_sequences
    from convlstm.data.forecast_netcdf import write_forecast_netcdf as write_forecast_netcdf
    from convlstm.data.hdf5 import HDF5Sequences as HDF5Sequences
    from convlstm.data.hickle_kitti import KittiHickle as KittiHickle
    from convlstm.data.image_folders import ImageFolderSequences as ImageFolderSequences
    from convlstm.data.layout import to_tchw as to_tchw
    from convlstm.data.mlcast import MlcastSequences as MlcastSequences
    from convlstm.data.mlcast_forecast import write_mlcast_forecast as write_mlcast_forecast
    from convlstm.data.moving_mnist import MovingMNIST as MovingMNIST
    from convlstm.data.moving_mnist import MovingMNISTFile as MovingMNISTFile
    from convlstm.data.normalization import Normalization as Normalization
    from convlstm.data.numpy_arrays import NumpySequences as NumpySequences
    from convlstm.data.odim import ODIMSequences as ODIMSequences
    from convlstm.data.radar import SyntheticRadar as SyntheticRadar
    from convlstm.data.radar_archive import RadarArchiveSequences as RadarArchiveSequences
    from convlstm.data.reanalysis import ReanalysisSequences as ReanalysisSequences
    from convlstm.data.sampling import ChunkAwareSampler as ChunkAwareSampler
    from convlstm.data.sampling import RainBiasedPatches as RainBiasedPatches
    from convlstm.data.scene_cuts import find_scene_cuts as find_scene_cuts
    from convlstm.data.shapes import MovingShapesSegmentation as MovingShapesSegmentation
    from convlstm.data.splits import (
        RecordingSplit as RecordingSplit,
    )
    from convlstm.data.splits import (
        TimeBlockSplit as TimeBlockSplit,
    )
    from convlstm.data.splits import (
        select_split as select_split,
    )
    from convlstm.data.splits import (
        split_indices as split_indices,
    )
    from convlstm.data.transforms import (
        CenterCrop as CenterCrop,
    )
    from convlstm.data.transforms import (
        Compose as Compose,
    )
    from convlstm.data.transforms import (
        RandomCrop as RandomCrop,
    )
    from convlstm.data.transforms import (
        Resize as Resize,
    )
    from convlstm.data.transforms import (
        flip_rotate as flip_rotate,
    )
    from convlstm.data.video import VideoSequences as VideoSequences
    from convlstm.data.video import read_video as read_video
    from convlstm.data.windows import Recording as Recording
    from convlstm.data.windows import WindowDataset as WindowDataset
    from convlstm.data.workers import init_worker as init_worker
    from convlstm.data.xarray_source import WindowCoords as WindowCoords
    from convlstm.data.xarray_source import XarraySequences as XarraySequences
