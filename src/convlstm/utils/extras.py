"""Which optional extra of the package brings which third-party module.

The core (``pip install convlstm``) needs only torch, numpy, safetensors and PyYAML; training, data loaders,
nowcasting baselines, Keras import, export, archives at URLs and weather files (GRIB, METAR) each come with an
extra. A command that reaches a missing module turns the ``ModuleNotFoundError`` into one line naming the extra to
install (`missing_extra_message`).
"""

#: top-level module name -> the extra of pyproject.toml that installs it
MODULE_EXTRAS: dict[str, str] = {
    "lightning": "train",
    "torchmetrics": "train",
    "tensorboard": "train",
    "matplotlib": "train",
    "mlxtend": "data",
    "scipy": "data",
    "h5py": "data",
    "hickle": "data",
    "xarray": "data",
    "netCDF4": "data",
    "zarr": "data",
    "imageio": "train",
    "imageio_ffmpeg": "data",
    "PIL": "data",
    "pysteps": "nowcast",
    "cv2": "nowcast",
    "pyproj": "nowcast",
    "cf_xarray": "nowcast",
    "keras": "keras",
    "onnx": "export",
    "onnxruntime": "export",
    "onnxscript": "export",
    "fsspec": "remote",
    "aiohttp": "remote",
    "s3fs": "remote",
    "cfgrib": "weather",
    "eccodes": "weather",
    "metpy": "weather",
}


def extra_for(error: ModuleNotFoundError) -> str | None:
    """The extra that installs the module ``error`` found missing, or None when no extra brings it."""
    top = (error.name or "").split(".")[0]
    return MODULE_EXTRAS.get(top)


def missing_extra_message(error: ModuleNotFoundError) -> str | None:
    """One line telling the user which extra to install, or None when the missing module is not an extra's."""
    extra = extra_for(error)
    if extra is None:
        return None
    return f'this needs the module {error.name!r}, which comes with an extra: pip install "convlstm[{extra}]"'
