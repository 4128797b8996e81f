"""Small radar files in the layouts pysteps' importers read (FMI's gzipped PGM composites, KNMI's HDF5), written
into a temporary folder instead of downloading real ones: shared by the tests of radar archives and of
``convlstm nowcast``."""

import gzip
from datetime import datetime
from pathlib import Path

import h5py
import numpy as np

FMI_SHAPE, KNMI_SHAPE = (24, 32), (20, 18)  # (H, W): two grids, as two services have


def fmi_codes(t: int, shape: tuple[int, int] = FMI_SHAPE) -> np.ndarray:
    """uint8 codes, dBZ = (code - 64) / 2: a 30 to 45 dBZ cell drifting east, -32 dBZ around, a corner without
    coverage (255)."""
    codes = np.zeros(shape, dtype=np.uint8)
    codes[4:12, 2 + t : 10 + t] = np.random.default_rng(t).integers(124, 154, size=(8, 8))
    codes[:3, -5:] = 255
    return codes


def write_fmi(root: Path, when: datetime, codes: np.ndarray) -> Path:
    """A gzipped 8-bit PGM with the header comments of FMI's composites (pysteps reads the grid from them)."""
    folder = root / "fmi" / when.strftime("%Y%m%d")
    folder.mkdir(parents=True, exist_ok=True)
    comments = [
        "composite_area FIN",
        "projection_name SUOMI1",
        f"obstime {when:%Y%m%d%H%M}",
        "producttype CAPPI",
        "productname LOWEST",
        "param CorrectedReflectivity",
        "metersperpixel_x 999.674053",
        "metersperpixel_y 999.62859",
        "projection radar {",
        "type stereographic",
        "centrallongitude 25",
        "centrallatitude 90",
        "truelatitude 60",
        "bottomleft 18.600000 57.930000",
        "topright 34.903000 69.005000",
        "}",
    ]
    height, width = codes.shape
    header = "P5\n" + "".join(f"# {line}\n" for line in comments) + f"{width} {height}\n255\n"
    path = folder / f"{when:%Y%m%d%H%M}_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz"
    with gzip.open(path, "wb") as f:
        f.write(header.encode() + codes.tobytes())
    return path


def knmi_counts(t: int, shape: tuple[int, int] = KNMI_SHAPE) -> np.ndarray:
    """uint16 hundredths of a millimetre in 5 minutes: a shower moving south, no coverage (65535) on the left."""
    counts = np.zeros(shape, dtype=np.uint16)
    shower = counts[1 + t : 7 + t, 6:14]
    shower[...] = np.random.default_rng(100 + t).integers(1, 200, size=shower.shape)
    counts[:, :2] = 65535
    return counts


def write_knmi(root: Path, when: datetime, counts: np.ndarray) -> Path:
    """An HDF5 file in the KNMI Data Centre layout that pysteps' knmi_hdf5 importer reads."""
    folder = root / "knmi" / when.strftime("%Y/%m")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"RAD_NL25_RAP_5min_{when:%Y%m%d%H%M}.h5"
    rows, columns = counts.shape
    with h5py.File(path, "w") as f:
        f.create_group("image1").create_dataset("image_data", data=counts)
        geographic = f.create_group("geographic")
        geographic.attrs.update(
            {
                "geo_column_offset": np.array([0.0], dtype=np.float32),
                "geo_row_offset": np.array([3650.0], dtype=np.float32),
                "geo_pixel_size_x": np.array([1.0], dtype=np.float32),
                "geo_pixel_size_y": np.array([-1.0], dtype=np.float32),
                "geo_number_columns": np.array([columns], dtype=np.int32),
                "geo_number_rows": np.array([rows], dtype=np.int32),
                "geo_dim_pixel": np.bytes_("KM,KM"),
            }
        )
        projection = geographic.create_group("map_projection")
        projection.attrs["projection_proj4_params"] = np.bytes_(
            "+proj=stere +lat_0=90 +lon_0=0.0 +lat_ts=60.0 +a=6378.137 +b=6356.752 +x_0=0 +y_0=0"
        )
    return path
