"""The file formats real data comes in: numpy arrays, HDF5, hickle, image folders, video, netCDF / zarr through
xarray, reanalysis archives, ODIM composites, pysteps radar archives and mlcast stores (local or fsspec URLs), and
the writers of forecasts as netCDF / zarr."""
