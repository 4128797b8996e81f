"""The CF georeferencing of a projected grid, from pyproj: its grid-mapping variable and the latitude and longitude
of every pixel.

A grid mapping variable (CF conventions, section 5.6) holds the projection's CF attributes (``grid_mapping_name``
and its parameters), ``crs_wkt`` (CF's WKT attribute) and ``spatial_ref`` (the same WKT, where GDAL and the mlcast
convention look); a data variable names it in its ``grid_mapping`` attribute. Latitude and longitude are 2-D
auxiliary coordinates on (y, x), on the projection's own geographic CRS (its datum: WGS 84 for most radar grids,
ETRS89 for the European ones, which differs by less than a metre), so that a reader without pyproj can still place
every pixel, and a reader with it can check them against the projection.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _pyproj() -> Any:
    try:
        import pyproj
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("georeferencing a grid needs pyproj (pip install 'convlstm[nowcast]')") from err
    return pyproj


def crs_from(definition: str, *, where: str = "projdef") -> Any:
    """The ``pyproj.CRS`` of a PROJ string, a WKT string or an authority code ("EPSG:3035").

    Raises:
        ValueError: pyproj cannot read ``definition``; the message names ``where``.
    """
    pyproj = _pyproj()
    try:
        return pyproj.CRS.from_user_input(definition)
    except pyproj.exceptions.CRSError as err:
        raise ValueError(
            f"{where} must be a PROJ string, a WKT string or an EPSG code, got {definition!r}: {err}"
        ) from None


def grid_mapping(definition: str) -> tuple[str, dict[str, object]]:
    """The CF grid-mapping variable of a CRS definition (see
    [`crs_from`][convlstm.data.formats.grid_mapping.crs_from]): its name (the ``grid_mapping_name``, as pysteps names
    it, or "crs" for a CRS that CF has no name for) and its attributes, with ``crs_wkt`` and ``spatial_ref``, and
    ``proj4`` when the definition is a PROJ string."""
    crs = crs_from(definition)
    attrs: dict[str, object] = dict(crs.to_cf())
    name = str(attrs.get("grid_mapping_name", "crs"))
    if name == "polar_stereographic" and "latitude_of_projection_origin" not in attrs:
        # CF requires it (+90 or -90); pyproj leaves it out when the definition gives a standard parallel.
        lat_0 = [part.split("=", 1)[1] for part in definition.split() if part.startswith("+lat_0=")]
        # Without +lat_0 (a WKT), the pole is on the standard parallel's side of the equator.
        pole = 90.0 if float(str(attrs.get("standard_parallel", 90.0))) >= 0 else -90.0
        attrs["latitude_of_projection_origin"] = _degrees(lat_0[0]) if lat_0 else pole
    attrs["spatial_ref"] = attrs["crs_wkt"]
    if definition.lstrip().startswith("+"):
        attrs["proj4"] = definition
    return name, attrs


def _degrees(text: str) -> float:
    """A PROJ angle in degrees: "90", "-90", or with a hemisphere as FMI's composites write it ("90N", "60S")."""
    text = text.strip().upper()
    sign = -1.0 if text.endswith(("S", "W")) else 1.0
    return sign * float(text.rstrip("NSEW"))


def latitude_longitude(definition: str, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude (degrees) of every pixel centre of the grid x (W,) by y (H,), given in the units of the
    CRS ``definition``: two (H, W) float64 arrays, on the CRS's own geographic CRS.

    Its own, not WGS 84 by name: a PROJ string such as KNMI's gives its ellipsoid in km (+a=6378.137), which PROJ
    refuses to transform to the Earth's; the angles on its own ellipsoid are the right ones all the same.
    """
    pyproj = _pyproj()
    crs = crs_from(definition)
    transformer = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
    xx, yy = np.meshgrid(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    lon, lat = transformer.transform(xx, yy)
    return np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)


#: CF attributes of the latitude and longitude coordinates.
LATITUDE_ATTRS = {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north"}
LONGITUDE_ATTRS = {"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east"}
